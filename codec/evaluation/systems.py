"""The codecs an evaluation compares: ours (any loaded model) and classical baselines.

Baselines run through external programs when they are installed: Opus (libopus, VoIP mode;
``opus`` at a constant bitrate, ``opus-vbr`` at a variable one, libopus' default and its best
setting for speech) and Speex (libspeex, wideband, CBR) through ``ffmpeg``; Codec2 through ``c2enc``/``c2dec``
(modes 3200 and 1300). Their measured bitrate is their payload (the codec's packets, from
``ffprobe``) over the duration, the container's bits reported apart as overhead; ours is every
bit of the ``.codes`` file (header, metadata and CRCs included, so ours is never favoured), its
overhead being the part of that which is not codes.
"""

import functools
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import soundfile as sf

from codec.audio import resample
from codec.bitstream import codes_bytes, from_bytes, to_bytes
from codec.coding import decode_audio, encode_audio

BASELINES = ("opus", "opus-vbr", "speex", "codec2")
OPUS_MODES = {"opus": "off", "opus-vbr": "on"}  # baseline name -> ffmpeg -vbr
# Speex wideband CBR quality -> nominal kbps (Speex manual, table 9.2)
SPEEX_WB_KBPS = {0: 3.95, 1: 5.75, 2: 7.75, 3: 9.8, 4: 12.8, 5: 16.8, 6: 20.6, 7: 23.8, 8: 27.8}
CODEC2_MODES = (3200, 1300)
OPUS_MIN_KBPS = 6.0


@dataclass
class Coded:
    audio: np.ndarray        # [T'] decoded mono signal
    sample_rate: int
    payload_bits: int        # bits measured (baselines: their packets; ours: the whole .codes file)
    overhead_bits: int       # baselines: the container's bits besides; ours: the file's bits that are not codes
    encode_seconds: float
    decode_seconds: float


@dataclass
class System:
    """A codec at one setting: ``code(audio [T], sample_rate) -> Coded``. ``time_aligned``: its
    decoder removes its own latency exactly, so scoring does not search for a lag."""

    name: str
    nominal_kbps: float
    setting: str
    time_aligned: ClassVar[bool] = False

    def code(self, audio: np.ndarray, sample_rate: int) -> Coded:
        raise NotImplementedError


@dataclass
class OurCodec(System):
    """A model of this suite; ``entropy_coder`` range-codes its codes (the file is what is measured);
    ``refine_steps`` > 0 refines the latent while encoding (``codec/refine.py``).

    Time-aligned: decoding removes the model's algorithmic latency, known exactly here (a
    baseline's is estimated by the lag search), and returns the input's exact length; the output is
    scored as decoded, any delay the network itself learnt included. A search would have to rely on
    envelopes, as the output need not keep the input's phase (esc-16k-small's waveform correlates
    with the input at about 0 at every lag), and found noise: on the 40 dev files at 6 kbps it
    shifted esc-16k-small by -56 to +85 samples, and STOI scored 0.919 against 0.923 as decoded
    (better as decoded on 31 of 40; any constant lag within ±1 ms: 0.923). conv-16k's envelopes
    trail by about 2 ms, its own delay: STOI 0.883 as decoded, 0.886 with the search (40 dev
    files, 6 kbps); on every 2nd dev file 0.888 as decoded, 0.893 delayed by a constant 32 samples.
    """

    time_aligned: ClassVar[bool] = True
    model: object = None
    entropy_coder: object = None
    refine_steps: int = 0

    def code(self, audio: np.ndarray, sample_rate: int) -> Coded:
        start = time.perf_counter()
        codes_file = encode_audio(self.model, audio[:, None], sample_rate, self.nominal_kbps, self.refine_steps)
        data = to_bytes(codes_file, self.entropy_coder)
        encoded = time.perf_counter()
        decoded, rate = decode_audio(self.model, from_bytes(data, self.entropy_coder))
        done = time.perf_counter()
        return Coded(decoded[:, 0], rate, 8 * len(data), 8 * (len(data) - codes_bytes(data)),
                     encoded - start, done - encoded)


class BaselineFailed(RuntimeError):
    """A baseline's program failed on one file (the evaluation leaves the file out of its row)."""


def _run(command: list[str]) -> subprocess.CompletedProcess:
    """Run a baseline's program; its output. Raises BaselineFailed with its last line of errors."""
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except OSError as error:   # removed or unrunnable since the start
        raise BaselineFailed(f"{command[0]} could not run ({error.strerror or error})") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        raise BaselineFailed(f"{command[0]} failed: {last}")
    return result


def _packet_bits(path: Path) -> int:
    # JSON, not CSV: ffprobe's CSV gives a packet with side data (Opus' first and last: samples to
    # skip) as "13," and a blank line, which a line parser drops
    output = _run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                   "packet=size", "-of", "json", str(path)])
    try:
        return 8 * sum(int(packet["size"]) for packet in json.loads(output.stdout).get("packets", []))
    except (ValueError, TypeError, KeyError, AttributeError):
        raise BaselineFailed(f"ffprobe gave no packet sizes for {path.name}") from None


def _read_decoded(path: Path) -> tuple[np.ndarray, int]:
    """A baseline's decoded file as float64 ``[T]`` (mono) and its rate. Raises BaselineFailed if
    its program wrote no readable audio (and still exited 0)."""
    try:
        audio, rate = sf.read(str(path), dtype="float64")
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as error:
        raise BaselineFailed(f"ffmpeg wrote no readable audio ({error})") from None
    return (audio if audio.ndim == 1 else audio[:, 0]), rate


@dataclass
class FfmpegCodec(System):
    encoder_args: tuple[str, ...] = ()

    def code(self, audio: np.ndarray, sample_rate: int) -> Coded:
        signal = resample(audio, sample_rate, 16000)
        if len(signal) == 0:   # ffmpeg writes no Ogg page for no samples and fails to read the file back
            return Coded(np.zeros(0), 16000, 0, 0, 0.0, 0.0)
        with tempfile.TemporaryDirectory() as tmp:
            source, coded, decoded = Path(tmp) / "in.wav", Path(tmp) / "coded.ogg", Path(tmp) / "out.wav"
            sf.write(str(source), np.clip(signal, -1, 1), 16000, subtype="PCM_16")
            start = time.perf_counter()
            _run(["ffmpeg", "-v", "error", "-y", "-i", str(source), *self.encoder_args, str(coded)])
            encoded = time.perf_counter()
            _run(["ffmpeg", "-v", "error", "-y", "-i", str(coded), "-ar", "16000", "-ac", "1",
                  "-c:a", "pcm_f32le", str(decoded)])
            done = time.perf_counter()
            payload = _packet_bits(coded)
            out, rate = _read_decoded(decoded)
            return Coded(out, rate, payload, 8 * coded.stat().st_size - payload, encoded - start, done - encoded)


@dataclass
class Codec2(System):
    mode: int = 3200

    def code(self, audio: np.ndarray, sample_rate: int) -> Coded:
        with tempfile.TemporaryDirectory() as tmp:
            raw, bits, out = Path(tmp) / "in.raw", Path(tmp) / "coded.bit", Path(tmp) / "out.raw"
            signal = np.clip(resample(audio, sample_rate, 8000), -1, 1)
            (signal * 32767).astype("<i2").tofile(raw)
            start = time.perf_counter()
            _run(["c2enc", str(self.mode), str(raw), str(bits)])
            encoded = time.perf_counter()
            _run(["c2dec", str(self.mode), str(bits), str(out)])
            done = time.perf_counter()
            try:
                decoded = np.fromfile(out, dtype="<i2").astype(np.float64) / 32768
            except (OSError, ValueError) as error:
                raise BaselineFailed(f"c2dec wrote no readable output ({error})") from None
            return Coded(decoded, 8000, 8 * bits.stat().st_size, 0, encoded - start, done - encoded)


@functools.cache
def _ffmpeg_encoders() -> frozenset[str] | str:
    """The names of the encoders the installed ffmpeg has (``ffmpeg -encoders``), or why it could
    not say."""
    try:
        listing = _run(["ffmpeg", "-hide_banner", "-encoders"]).stdout
    except BaselineFailed as error:
        return str(error)
    table = listing.split("------", 1)[-1]   # below the legend: " A....D libopus  libopus Opus"
    return frozenset(fields[1] for fields in map(str.split, table.splitlines()) if len(fields) > 1)


def baseline_systems(names: list[str], bitrates_kbps: list[float]) -> tuple[list[System], list[str]]:
    """Baseline systems for the requested names and bitrates, and notes on what was skipped.

    Raises:
        ValueError: for a name that is not one of ``BASELINES``.
    """
    systems, notes = [], []
    for name in names:
        if name not in BASELINES:
            raise ValueError(f"unknown baseline '{name}'; choose from {', '.join(BASELINES)}")
        program = "c2enc" if name == "codec2" else "ffmpeg"
        if shutil.which(program) is None or (program == "ffmpeg" and shutil.which("ffprobe") is None):
            notes.append(f"{name} skipped: '{program}' is not installed "
                         f"(Debian package {'codec2' if name == 'codec2' else 'ffmpeg'})")
            continue
        encoder = "libspeex" if name == "speex" else "libopus" if name in OPUS_MODES else None
        encoders = _ffmpeg_encoders() if encoder else frozenset()
        if isinstance(encoders, str):
            notes.append(f"{name} skipped: 'ffmpeg -encoders' failed ({encoders})")
            continue
        if encoder and encoder not in encoders:
            notes.append(f"{name} skipped: this ffmpeg has no {encoder} encoder (Debian's ffmpeg has it)")
            continue
        if name in OPUS_MODES:
            for kbps in bitrates_kbps:
                if kbps < OPUS_MIN_KBPS:
                    notes.append(f"{name} skipped at {kbps:g} kbps: libopus codes speech from {OPUS_MIN_KBPS:g} kbps")
                    continue
                vbr = OPUS_MODES[name]
                systems.append(FfmpegCodec(name, kbps, f"libopus voip {'VBR' if vbr == 'on' else 'CBR'}", (
                    "-c:a", "libopus", "-application", "voip", "-vbr", vbr, "-b:a", f"{kbps:g}k")))
        elif name == "speex":
            for kbps in bitrates_kbps:
                quality, nominal = min(SPEEX_WB_KBPS.items(), key=lambda item: abs(item[1] - kbps))
                if abs(nominal - kbps) > 0.35 * kbps:
                    notes.append(f"speex skipped at {kbps:g} kbps: no wideband mode near it")
                    continue
                systems.append(FfmpegCodec("speex", nominal, f"libspeex wideband CBR q{quality}", (
                    "-c:a", "libspeex", "-ar", "16000", "-cbr_quality", str(quality))))
        else:
            systems += [Codec2("codec2", mode / 1000, f"mode {mode}", mode) for mode in CODEC2_MODES]
    return systems, notes
