"""Real-time streaming: audio source -> encoder -> packets -> decoder -> audio sinks.

``codec stream`` runs this loop on 20 ms blocks, from the microphone (sounddevice/PortAudio)
or from a file paced in real time, to the speaker and/or a recording. Everything crosses a
packet boundary (``codec.packets``), optionally through a lossy link, so what is heard is what a
receiver would hear. Devices that cannot open at the model's rate are opened at their own rate
and resampled (soxr). Overruns (input the device had to drop) and underruns (output the device
ran out of) are counted and shown, and the stream keeps running; lost packets are concealed.
"""

import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from codec.atomic import create_partial, replace_with_partial
from codec.audio import checked_peak, write_samples
from codec.band_fill import BandFill
from codec.errors import CodecError
from codec.highpass import HighPass
from codec.packets import (
    MAX_PACKET_CODEBOOKS,
    MAX_PACKET_GLOBAL_CODES,
    StreamInfo,
    end_packet,
    global_packet,
    packet_bytes,
    read_packets,
    stream_header,
)
from codec.signals import held_stop_signals
from codec.threads import check_threads


@dataclass
class StreamStats:
    blocks: int = 0
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0
    overruns: int = 0
    underruns: int = 0
    packets: int = 0
    packets_lost: int = 0
    payload_bytes: int = 0
    code_frames: int = 0             # frames of codes sent: the time the packets carry (whole frames)
    output_samples: int = 0
    latency_ms: dict = field(default_factory=dict)
    interrupted: bool = False        # stopped by Ctrl-C, SIGTERM or SIGHUP (what was recorded is kept)
    stop_signal: int = 0             # which of them (its number), if interrupted

    @property
    def real_time_factor(self) -> float:
        """Processing time over audio time (below 1: faster than real time)."""
        return self.compute_seconds / self.audio_seconds if self.audio_seconds else 0.0


RUNTIMES = ("torch", "onnx", "onnx-int8")


def import_sounddevice(instead: str = "stream a file with --input FILE"):
    """sounddevice, or a CodecError that names the fix when PortAudio is missing: install it, or
    ``instead`` (what the user can do without an audio device)."""
    try:
        import sounddevice
    except (OSError, ImportError) as error:
        raise CodecError(f"no audio devices ({error}): install the system package libportaudio2 "
                         f"(apt-get install libportaudio2), or {instead}") from None
    return sounddevice


def supported_rate(sd, device, preferred: int, kind: str) -> int:
    """``preferred`` if the device opens at it, else the device's default rate."""
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=device, samplerate=preferred, channels=1)
        return preferred
    except Exception:  # noqa: BLE001 - PortAudio reports unsupported settings with varied types
        return int(sd.query_devices(device, kind)["default_samplerate"])


class FileSource:
    """Blocks of an audio file, paced in real time (or as fast as possible with ``realtime=False``).
    Paced, a block read over a block's duration after it was due is an overrun: the coding fell
    behind real time, as a microphone's buffer would have overflowed.

    The file is read ahead in ``READ_AHEAD_SECONDS`` pieces, as ``codec encode`` reads it:
    libsndfile's MP3 decoder alters the audio (and libmpg123 prints errors) when it is read in
    pieces as small as a block."""

    READ_AHEAD_SECONDS = 10.0

    def __init__(self, path: Path, block_seconds: float, realtime: bool = True):
        from codec.audio import open_audio, read_blocks

        self.file = open_audio(path)
        self.path = path
        self.sample_rate, self.channels = self.file.samplerate, self.file.channels
        self.block = max(1, round(block_seconds * self.sample_rate))
        self.pieces = read_blocks(self.file, path, max(self.block, round(self.READ_AHEAD_SECONDS * self.sample_rate)))
        self.buffered = np.zeros((0, self.channels), np.float32)
        self.realtime = realtime
        self.start = None
        self.samples = 0
        self.limited = 0   # float samples beyond full scale, limited to ±1.0 (reported, as encode does)
        self.peak = 0.0    # the largest magnitude among them
        self.missing = 0   # at the end: samples the header announces beyond those read (a file cut short)

    def _next_block(self) -> np.ndarray:
        if len(self.buffered) < self.block:
            piece = next(self.pieces, None)
            if piece is not None:
                self.buffered = np.concatenate([self.buffered, piece.astype(np.float32)])
        block, self.buffered = self.buffered[:self.block], self.buffered[self.block:]
        return block

    def read(self) -> tuple[np.ndarray | None, bool]:
        late = False
        if self.realtime:
            self.start = self.start or time.monotonic()
            due = self.start + (self.samples + self.block) / self.sample_rate
            now = time.monotonic()
            late = now - due > self.block / self.sample_rate
            if late:   # one overrun per stall: the schedule goes on from now, as a microphone's would
                self.start += now - due
                due = now
            time.sleep(max(0.0, due - now))
        block = self._next_block()
        peak = checked_peak(block, self.path)   # integer-scale floats: refused, as codec encode refuses them
        outside = int(np.count_nonzero(np.abs(block) > 1.0)) if peak > 1.0 else 0
        if outside:
            self.limited += outside
            self.peak = max(self.peak, peak)
            block = np.clip(block, -1.0, 1.0)
        self.samples += len(block)
        if not len(block):
            from codec.audio import samples_missing

            self.missing = samples_missing(self.file, self.samples)
        return (block if len(block) else None), late

    def close(self) -> None:
        self.file.close()


class DeviceSource:
    """Microphone blocks from a sounddevice InputStream; reports PortAudio's overflow flag."""

    live = True   # delay is heard: resampled at soxr's low-delay quality

    def __init__(self, sd, device, sample_rate: int, channels: int, block_seconds: float):
        self.sample_rate, self.channels = sample_rate, channels
        self.block = max(1, round(block_seconds * sample_rate))
        self.stream = sd.InputStream(device=device, samplerate=sample_rate, channels=channels,
                                     blocksize=self.block, dtype="float32")
        self.stream.start()
        self.latency = float(self.stream.latency)

    def read(self) -> tuple[np.ndarray | None, bool]:
        data, overflowed = self.stream.read(self.block)
        return np.asarray(data), bool(overflowed)

    def close(self) -> None:
        self.stream.stop()
        self.stream.close()


class DeviceSink:
    """Speaker output through a sounddevice OutputStream; reports PortAudio's underflow flag."""

    live = True

    def __init__(self, sd, device, sample_rate: int, channels: int, block_seconds: float):
        self.sample_rate, self.channels = sample_rate, channels
        self.stream = sd.OutputStream(device=device, samplerate=sample_rate, channels=channels,
                                      blocksize=max(1, round(block_seconds * sample_rate)), dtype="float32")
        self.stream.start()
        self.latency = float(self.stream.latency)

    def write(self, block: np.ndarray) -> bool:
        return bool(self.stream.write(np.ascontiguousarray(block, dtype=np.float32)))

    def close(self, keep: bool = True) -> None:  # (a speaker has nothing to keep)
        self.stream.stop()
        self.stream.close()


class FileSink:
    """Records the decoded stream; written through a temporary file and renamed on close, so an
    interrupted stream keeps what was recorded, a failed one leaves nothing, and neither leaves
    half a file."""

    def __init__(self, path: Path, sample_rate: int, channels: int, overwrite: bool = True):
        from codec.coding import audio_format_for, open_sink

        self.path, self.sample_rate, self.channels, self.overwrite = path, sample_rate, channels, overwrite
        audio_format_for(path)   # an unsupported suffix fails before any file is made
        self.tmp = create_partial(path)
        try:
            self.file = open_sink(self.tmp, path, sample_rate, channels)
        except CodecError:
            self.tmp.unlink(missing_ok=True)
            raise
        self.clipped = 0   # decoded samples beyond full scale, limited to ±1.0 (reported, as decode does)
        self.frames = 0

    def write(self, block: np.ndarray) -> bool:
        self.clipped += int(np.count_nonzero(np.abs(block) > 1.0))
        self.frames += len(block)
        try:
            write_samples(self.file, np.clip(block, -1.0, 1.0))
        except sf.LibsndfileError as error:
            raise self._failed(error) from None
        return False

    def _failed(self, error: sf.LibsndfileError) -> CodecError:
        from codec.atomic import write_limit_reached

        return CodecError(f"{self.path}: cannot write ({write_limit_reached(self.tmp) or error.error_string})")

    def close(self, keep: bool = True) -> None:
        """Finish the file (``keep``), or drop what was written (the stream failed)."""
        try:
            try:
                self.file.close()
            except sf.LibsndfileError as error:
                if keep:
                    raise self._failed(error) from None
            if keep and self.frames == 0 and self.file.format == "FLAC":   # libsndfile wrote no header
                raise CodecError(f"{self.path}: the stream gave no samples, and an empty FLAC file cannot be "
                                 f"written; nothing was written")
            if keep:
                replace_with_partial(self.tmp, self.path, self.overwrite)
        finally:
            self.tmp.unlink(missing_ok=True)   # (gone already once renamed)


# soxr "LQ" holds back about 17 ms less than "HQ" per direction at 20 ms blocks (measured: 20 vs 37 ms
# for 48 -> 16 kHz), but its pass band ends early (7 kHz -13 dB, 7.5 kHz -35 dB at 48 <-> 16 kHz; at
# 8 <-> 16 kHz 3.8 kHz -44 dB): worth it only beside a microphone or a speaker, where delay is heard.
# Files are resampled with "HQ" (7.5 kHz -0.4 dB), as codec.coding does.
LIVE_QUALITY = "LQ"
FILE_QUALITY = "HQ"


def resampling_quality(end) -> str:
    """soxr's quality for resampling at this end of a stream (its source or a sink): "LQ" for a live
    device (``live`` true), else "HQ"."""
    return LIVE_QUALITY if getattr(end, "live", False) else FILE_QUALITY


def resampling_delay(from_rate: int, to_rate: int, quality: str) -> float:
    """How far a ``_Resampler``'s output lags its input in 20 ms blocks (it holds samples back for
    its filter), in seconds: a share of the stream's latency."""
    if from_rate == to_rate:
        return 0.0
    probe = soxr.ResampleStream(from_rate, to_rate, 1, dtype="float32", quality=quality)
    block = max(1, round(BLOCK_SECONDS * from_rate))
    given, produced, worst = 0, 0, 0.0
    for _ in range(50):
        given += block
        produced += len(probe.resample_chunk(np.zeros((block, 1), np.float32)))
        worst = max(worst, given / from_rate - produced / to_rate)
    return worst


class _Resampler:
    def __init__(self, from_rate: int, to_rate: int, channels: int, quality: str = FILE_QUALITY):
        self.identity = from_rate == to_rate
        if not self.identity:
            self.stream = soxr.ResampleStream(from_rate, to_rate, channels, dtype="float32", quality=quality)

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        if self.identity:
            return block
        return self.stream.resample_chunk(np.ascontiguousarray(block, dtype=np.float32), last=last)


class TorchLink:
    """Encoder and decoder sessions of a PyTorch model."""

    def __init__(self, model, num_codebooks: int, channels: int, global_refresh: float | None = None):
        from codec.streaming import StreamingDecoder, StreamingEncoder

        self.encoder = StreamingEncoder(model, num_codebooks, channels, refresh_seconds=global_refresh)
        self.decoder = StreamingDecoder(model, channels)
        self.needs_global = getattr(model, "global_code", None) is not None

    def encode(self, audio: np.ndarray) -> np.ndarray:
        return self.encoder.encode(torch.from_numpy(audio)).numpy()

    def flush_encoder(self) -> np.ndarray:
        return self.encoder.flush().numpy()

    def take_global_codes(self) -> np.ndarray | None:
        """A new time-invariant code ``[C, G]`` to send before the frames just encoded, or None."""
        codes = self.encoder.take_global_codes()
        return None if codes is None else codes.numpy()

    def set_global_codes(self, codes: np.ndarray) -> None:
        self.decoder.global_codes = torch.from_numpy(np.asarray(codes, dtype=np.int64))

    def decode(self, codes: np.ndarray) -> np.ndarray:
        if self.needs_global and self.decoder.global_codes is None:   # its packet was lost
            return self.conceal(codes.shape[-1])
        return self.decoder.decode(torch.from_numpy(np.asarray(codes, dtype=np.int64))).numpy()

    def conceal(self, frames: int) -> np.ndarray:
        return self.decoder.conceal(frames).numpy()

    def flush_decoder(self) -> np.ndarray:
        return self.decoder.flush().numpy()


class OnnxLink(TorchLink):
    """The same, through the exported ONNX graphs in onnxruntime."""

    def __init__(self, runtime, num_codebooks: int, channels: int):
        from codec.onnx.runtime import OnnxStreamingDecoder, OnnxStreamingEncoder

        self.encoder = OnnxStreamingEncoder(runtime, num_codebooks, channels)
        self.decoder = OnnxStreamingDecoder(runtime, channels)
        self.needs_global = False   # export refuses models with a global code

    def take_global_codes(self) -> None:
        return None

    def encode(self, audio: np.ndarray) -> np.ndarray:
        return self.encoder.encode(audio)

    def flush_encoder(self) -> np.ndarray:
        return self.encoder.flush()

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return self.decoder.decode(np.asarray(codes, dtype=np.int64))

    def conceal(self, frames: int) -> np.ndarray:
        return self.decoder.conceal(frames)

    def flush_decoder(self) -> np.ndarray:
        return self.decoder.flush()


def run_stream(link, info: StreamInfo, source, sinks: list, model_rate: int, packet_loss: float = 0.0,
               save: Path | None = None, on_status: Callable[[StreamStats], None] | None = None,
               seed: int = 0, packet_frames: int = 1, entropy_coder=None, overwrite: bool = True,
               highpass_hz: float | None = None) -> StreamStats:
    """Run the loop until the source ends or Ctrl-C (``stats.interrupted``); every sink then holds
    exactly the input's length (up to the interruption). ``highpass_hz``: the model's input
    high-pass (``codec.highpass``; causal, so a live stream can run it as ``codec encode`` does)."""
    stats = StreamStats()
    rng = np.random.default_rng(seed)
    resample_to_model = _Resampler(source.sample_rate, model_rate, source.channels, resampling_quality(source))
    fill = BandFill(source.sample_rate, model_rate, source.channels)   # a low-rate input's empty band
    highpass = HighPass(highpass_hz, source.sample_rate)

    def to_model(block: np.ndarray, last: bool = False) -> np.ndarray:
        return fill(resample_to_model(highpass(block), last=last)).astype(np.float32, copy=False)
    to_sinks = [_Resampler(model_rate, sink.sample_rate, source.channels, resampling_quality(sink)) for sink in sinks]
    written = [0] * len(sinks)
    saved = partial = None
    sequence, total_in, interrupted, keep = 0, 0, False, False

    waiting = []   # code frames not yet sent: a packet carries packet_frames of them

    def transmit(codes: np.ndarray, last: bool = False) -> np.ndarray:
        """Packetize every ``packet_frames`` frames (a resampler can hand over several at once;
        at the end, what is left), pass each packet through the (lossy) link, decode or conceal."""
        if codes.shape[-1]:
            waiting.append(codes)
        pending = np.concatenate(waiting, axis=-1) if waiting else None
        waiting.clear()
        out = [np.zeros((source.channels, 1, 0), np.float32)]
        while pending is not None and (pending.shape[-1] >= packet_frames or (last and pending.shape[-1])):
            out.append(send(pending[..., :packet_frames]))
            pending = pending[..., packet_frames:]
        if pending is not None and pending.shape[-1]:
            waiting.append(pending)
        return np.concatenate(out, axis=-1)

    def encoded(codes: np.ndarray, last: bool = False) -> np.ndarray:
        """Transmit newly encoded frames; a new global code goes first, in its own packet, after
        the frames coded with the previous one."""
        global_codes = link.take_global_codes()
        if global_codes is None:
            return transmit(codes, last)
        before = transmit(np.zeros(codes.shape[:2] + (0,), dtype=codes.dtype), last=True)
        return np.concatenate([before, send(None, global_codes), transmit(codes, last)], axis=-1)

    def send(codes: np.ndarray | None, global_codes: np.ndarray | None = None) -> np.ndarray:
        nonlocal sequence
        frames = 0 if codes is None else codes.shape[-1]
        packet = packet_bytes(sequence, codes, info, entropy_coder) if codes is not None else \
            global_packet(sequence, global_codes, info)
        sequence += 1
        stats.packets += 1
        stats.payload_bytes += len(packet)
        stats.code_frames += frames
        if saved:
            saved.write(packet)
        if packet_loss and rng.random() < packet_loss:
            stats.packets_lost += 1
            return link.conceal(frames)
        received = list(read_packets(packet, 0, info, entropy_coder))
        if not received:   # an entropy-coded packet whose codes failed their CRC
            stats.packets_lost += 1
            return link.conceal(frames)
        if received[0].global_codes is not None:
            link.set_global_codes(received[0].global_codes)
            return np.zeros((source.channels, 1, 0), np.float32)
        return link.decode(received[0].codes)

    def emit(audio_model_rate: np.ndarray, last: bool = False, limit: bool = False) -> None:
        block = audio_model_rate[:, 0].T if audio_model_rate.size else np.zeros((0, source.channels), np.float32)
        for index, (sink, resample) in enumerate(zip(sinks, to_sinks, strict=True)):
            out = resample(np.ascontiguousarray(block), last=last)
            if limit:  # the stream ends: exactly the input's duration at the sink's rate
                expected = round(total_in * sink.sample_rate / source.sample_rate)
                out = out[:max(0, expected - written[index])]
                out = np.concatenate([out, np.zeros((max(0, expected - written[index] - len(out)),
                                                     source.channels), np.float32)])
            if len(out):
                stats.underruns += int(sink.write(out))
                written[index] += len(out)

    try:
        if save:   # like the sinks: through a temporary file, renamed once the stream ends
            partial = create_partial(save)
            saved = partial.open("wb")
            saved.write(stream_header(info))
        while True:
            try:
                block, overflowed = source.read()
            except KeyboardInterrupt as stop:   # Ctrl-C, or Terminated (SIGTERM, SIGHUP)
                interrupted, stats.stop_signal = True, getattr(stop, "signum", signal.SIGINT)
                break
            if block is None:
                break
            # a stop while coding the block waits for its end: the saved stream then ends as
            # between blocks, with its end packet (cut mid-block, it had none)
            with held_stop_signals() as held:
                start = time.perf_counter()
                stats.overruns += int(overflowed)
                total_in += len(block)
                emit(encoded(link.encode(to_model(block).T[:, None, :].astype(np.float32))))
                stats.compute_seconds += time.perf_counter() - start
            stats.audio_seconds += len(block) / source.sample_rate
            stats.blocks += 1
            if held.signum is not None:
                interrupted, stats.stop_signal = True, held.signum
                break
            if on_status and stats.blocks % 10 == 0:
                on_status(stats)
        pieces = [encoded(link.encode(to_model(np.zeros((0, source.channels), np.float32), last=True)
                                      .T[:, None, :].astype(np.float32)))]   # the resampler's tail
        pieces += [encoded(link.flush_encoder(), last=True), link.flush_decoder()]
        emit(np.concatenate(pieces, axis=-1), last=True, limit=True)
        if saved:
            saved.write(end_packet(sequence, total_in))
        stats.output_samples = written[0] if written else 0
        keep = True
    except KeyboardInterrupt as stop:  # Ctrl-C while coding a block: keep what was recorded, as between blocks
        interrupted = keep = True
        stats.stop_signal = getattr(stop, "signum", signal.SIGINT)
    finally:
        # an error drops the recordings (a rerun needs no --force); the end of the input or Ctrl-C keeps them
        try:
            if saved:
                saved.close()
                if keep:
                    replace_with_partial(partial, save, overwrite)
        finally:
            if partial:   # (only one this call made: on a read-only disk even a missing file's unlink fails)
                partial.unlink(missing_ok=True)
            source.close()
            for sink in sinks:
                sink.close(keep)
    stats.interrupted = interrupted
    if on_status:
        on_status(stats)
    return stats


BLOCK_SECONDS = 0.02


def _link(codec_model, runtime: str, num_codebooks: int, channels: int, threads: int,
          global_refresh: float | None, console):
    """The encoder and decoder sessions of the stream, in PyTorch or in onnxruntime (exported once
    per model and kept: ``codec.onnx.cache``)."""
    if not runtime.startswith("onnx"):
        return TorchLink(codec_model, num_codebooks, channels, global_refresh)
    from codec.onnx.cache import load_streaming_export

    def exporting(folder: Path | None, reason: str | None) -> None:
        name = codec_model.config.name
        if folder is None:
            note = f"exporting {name} for onnxruntime, for this run only ({reason})"
        elif reason:
            note = f"exporting {name} for onnxruntime again ({reason})"
        else:
            note = f"exporting {name} for onnxruntime (once for these weights; kept in {folder})"
        console.print(f"{note} ...", highlight=False)

    exported = load_streaming_export(codec_model, runtime == "onnx-int8", threads, num_codebooks, exporting)
    return OnnxLink(exported, num_codebooks, channels)


def _device(value: str | None):
    if value is None:
        return None
    return int(value) if value.isdigit() else value


def run_stream_command(*, input: Path | None, output: Path | None, play: bool | None, bitrate: float | None,
                       model: str | None, runtime: str | None, device: str | None, list_devices: bool,
                       save: Path | None, packet_loss: float, realtime: bool, force: bool, console,
                       threads: int = 1, entropy: bool = False, packet_frames: int | None = None,
                       global_refresh: float | None = None) -> StreamStats:
    """``codec stream``: open the source, sinks and model, run the loop, report.

    Raises:
        CodecError: for bad options, a missing file or device, or PortAudio missing when needed.
    """
    if list_devices:
        console.print(str(import_sounddevice().query_devices()))
        return StreamStats()
    if runtime is not None:   # in any case, as --format
        if runtime.lower() not in RUNTIMES:
            raise CodecError(f"--runtime {runtime!r} is not supported; choose {', '.join(RUNTIMES[:-1])} or "
                             f"{RUNTIMES[-1]}")
        runtime = runtime.lower()
    if not 0.0 <= packet_loss < 1.0:
        raise CodecError(f"--packet-loss {packet_loss} must be in [0, 1)")
    # an entropy-coded packet pays a range coder's flush (up to 4 bytes) and a length: it needs
    # several frames to come out smaller, at (packet_frames - 1) frames of added latency
    packet_frames = (10 if entropy else 1) if packet_frames is None else packet_frames
    if not 1 <= packet_frames <= 255:
        raise CodecError(f"--packet-frames {packet_frames} must be 1 to 255")
    check_threads(threads)
    for option, path in (("--input", input), ("--output", output), ("--save", save)):
        if path is not None and str(path) == "-":   # a live stream is paced by files and devices, not pipes
            raise CodecError(f"{option} -: codec stream reads and writes files, not stdin or stdout; give a file "
                             f"name (codec encode and decode take -)")
    written = [path for path in (output, save) if path is not None]
    from codec.batch import resolved_path

    if len({resolved_path(path) for path in written}) < len(written):   # (a loop of links: named below)
        raise CodecError(f"--output and --save are the same file ({output}); give two names")
    from codec.coding import audio_format_for, check_output_path, codes_under_audio_name

    for option, path in (("--output", output), ("--save", save)):
        if path is not None:
            try:   # even with --force: a packet stream never takes an audio file's place
                check_output_path(path, force, input, stdout=False, codes_writer="--save" if path is save else None)
            except CodecError as error:   # (two outputs: say which)
                raise CodecError(f"{option}: {error}") from None
    if save is not None:
        if note := codes_under_audio_name(save, "packets"):
            console.print(f"warning: --save {note}", highlight=False)
    if output is not None:
        audio_format_for(output)   # an unsupported suffix fails before the model loads
    asked_to_play = bool(play)
    play = (output is None) if play is None else play
    if not play and output is None and save is None:
        raise CodecError("nothing to do with the decoded audio: give --output FILE, --save FILE or --play")
    if device is not None and input is not None and not play:
        raise CodecError(f"--device {device}: with --input and without --play no audio device is opened; "
                         f"drop --device, or add --play to hear the stream on it")

    # before the model loads (seconds): without PortAudio there is nothing to stream to or from
    if input is None:
        sd = import_sounddevice()
    else:   # only playing needs a device: the hint must not suggest the --input already given
        instead = "instead of --play" if asked_to_play else "(playing it is the default without --output)"
        if save is not None and not asked_to_play:
            instead += ", or add --no-play to only save the stream"
        instead = f"write the decoded audio with --output FILE {instead}"
        if output is not None:   # (playing was asked for beside it)
            instead = f"drop --play: --output {output} is written without an audio device"
        sd = import_sounddevice(instead) if play else None

    from codec.models import load_model

    torch.set_num_threads(threads)  # streaming is latency-bound: one thread, the other cores stay free
    codec_model = load_model(model)
    bitrate = codec_model.default_bitrate() if bitrate is None else bitrate
    try:
        num_codebooks = codec_model.codebooks_for_bitrate(bitrate)
    except ValueError as error:
        raise CodecError(f"--bitrate: {error}") from None
    if num_codebooks > MAX_PACKET_CODEBOOKS:
        raise CodecError(f"--bitrate {bitrate:g}: {num_codebooks} codebooks; a stream's packet holds at most "
                         f"{MAX_PACKET_CODEBOOKS} (codec encode has no such limit); stream a lower bitrate")
    has_global = getattr(codec_model, "global_code", None) is not None
    if has_global and codec_model.config.global_groups > MAX_PACKET_GLOBAL_CODES:
        raise CodecError(f"{codec_model.config.name} has {codec_model.config.global_groups} global codes "
                         f"(model.global_groups); a stream's global-code packet holds at most "
                         f"{MAX_PACKET_GLOBAL_CODES} (codec encode has no such limit)")
    if runtime is None:   # onnxruntime runs a frame about twice as fast as PyTorch on one thread (README)
        runtime = "torch" if has_global else "onnx"
    if has_global and runtime != "torch":
        raise CodecError(f"{codec_model.config.name} has a time-invariant global code, which the ONNX export does "
                         f"not support yet; stream it with --runtime torch")
    if global_refresh is not None and not (math.isfinite(global_refresh) and global_refresh > 0):
        raise CodecError(f"--global-refresh {global_refresh}: must be a positive number of seconds")
    if global_refresh is not None and not has_global:
        raise CodecError(f"--global-refresh: model {codec_model.config.name} has no time-invariant global code to "
                         f"resend (a TiCodec model has one: model.global_groups in its recipe)")
    coder = None
    if entropy:
        from codec.coding import entropy_coder_for, entropy_models_hint

        coder = entropy_coder_for(codec_model)
        if coder is None:
            raise CodecError(f"model '{codec_model.config.name}' has no entropy model (entropy.safetensors beside "
                             f"its weights); stream without --entropy{entropy_models_hint()}")
        if packet_frames == 1:   # (conv-16k, a dev file: 10.3 kbps against 8.9 plain; 2 frames 7.36 / 7.44)
            console.print("warning: --entropy with --packet-frames 1: each packet pays the range coder's flush and a "
                          "length, which outweigh the saving of one frame; from 2 frames per packet it saves (10, "
                          "the default with --entropy, saves more)", highlight=False)
    dev = _device(device)
    # the devices open last, after the link (an ONNX export can take seconds): an open microphone
    # would overflow meanwhile
    source = FileSource(input, BLOCK_SECONDS, realtime) if input is not None else None
    input_rate = supported_rate(sd, dev, codec_model.sample_rate, "input") if source is None else source.sample_rate
    channels = 1 if source is None else source.channels
    sinks = []
    try:
        if output is not None:
            sinks.append(FileSink(output, input_rate, channels, overwrite=force))
        output_rate = supported_rate(sd, dev, input_rate, "output") if play else None
        link = _link(codec_model, runtime, num_codebooks, channels, threads, global_refresh, console)
        if source is None:
            source = DeviceSource(sd, dev, input_rate, 1, BLOCK_SECONDS)
        if play:
            sinks.append(DeviceSink(sd, dev, output_rate, channels, BLOCK_SECONDS))
    except BaseException:  # nothing was streamed: no recording is left behind
        if source is not None:
            source.close()
        for sink in sinks:
            sink.close(keep=False)
        raise
    info = StreamInfo(codec_model.config.name, getattr(codec_model, "weights_sha256", "")[:8], source.sample_rate,
                      source.channels, codec_model.frame_rate, codec_model.codebook_size,
                      coder.name if coder else None, coder.weights[:8] if coder else None,
                      codec_model.config.global_codebook_size if has_global else None)
    device_ms = 1000 * (getattr(source, "latency", 0.0) + sum(getattr(s, "latency", 0.0) for s in sinks))
    heard = [sink for sink in sinks if getattr(sink, "live", False)] or sinks   # a speaker's path, where one plays
    resampling = resampling_delay(source.sample_rate, codec_model.sample_rate, resampling_quality(source)) + max(
        (resampling_delay(codec_model.sample_rate, sink.sample_rate, resampling_quality(sink)) for sink in heard),
        default=0.0)
    latency = {"algorithmic": 1000 * codec_model.latency / codec_model.sample_rate,
               "block": 1000 * BLOCK_SECONDS, "packet": 1000 * (packet_frames - 1) / codec_model.frame_rate,
               "resampling": 1000 * resampling, "devices": device_ms,
               # a global code summarises the stream's first seconds: their frames wait for it
               "global code": 1000 * codec_model.global_frames / codec_model.frame_rate if has_global else 0.0}

    def status(stats: StreamStats) -> None:
        stats.latency_ms = latency
        if not console.is_terminal:   # a live status line only where it can be redrawn
            return
        console.print(f"RTF {stats.real_time_factor:.3f}  {stats.audio_seconds:7.1f} s  overruns {stats.overruns}  "
                      f"underruns {stats.underruns}  packets lost {stats.packets_lost}/{stats.packets}  "
                      f"latency {sum(latency.values()):.0f} ms", end="\r", highlight=False)

    stats = run_stream(link, info, source, sinks, codec_model.sample_rate, packet_loss, save, status,
                       packet_frames=packet_frames, entropy_coder=coder, overwrite=force,
                       highpass_hz=codec_model.config.input_highpass_hz)
    if console.is_terminal:
        console.print()
    if stats.interrupted:
        name = "Ctrl-C" if stats.stop_signal == signal.SIGINT else signal.Signals(stats.stop_signal).name
        console.print(f"stopped ({name}); what was recorded is kept")
    # over the time the packets carry: a clip shorter than a frame still fills one frame's packet
    coded_seconds = max(stats.audio_seconds, stats.code_frames / codec_model.frame_rate)
    kbps = stats.payload_bytes * 8 / coded_seconds / 1000 if coded_seconds else 0.0
    packets = f"{stats.packets} packet{'' if stats.packets == 1 else 's'}"
    console.print(f"streamed {stats.audio_seconds:.1f} s: RTF {stats.real_time_factor:.3f}, {packets} "
                  f"({kbps:.2f} kbps with packet headers), {stats.packets_lost} lost, overruns {stats.overruns}, "
                  f"underruns {stats.underruns}, latency {sum(latency.values()):.0f} ms "
                  f"({' + '.join(f'{ms:.0f} {part}' for part, ms in latency.items() if ms or part != 'global code')})",
                  highlight=False)
    if getattr(source, "missing", 0):   # (as codec encode warns)
        console.print(f"warning: {input}: file is truncated: its header announces {source.samples + source.missing} "
                      f"samples, {source.samples} could be read; streamed those", highlight=False)
    if getattr(source, "limited", 0):
        console.print(f"warning: {input}: {source.limited} samples were beyond ±1.0 full scale (peak "
                      f"{source.peak:.6g}) and were limited to ±1.0", highlight=False)
    for sink in sinks:
        if getattr(sink, "clipped", 0):
            console.print(f"warning: {sink.path}: {sink.clipped} decoded samples exceeded ±1.0 and were clipped",
                          highlight=False)
    return stats
