"""Gather more varied training speech than ../shared/data holds: voice actors and native speakers
in Czech, Dutch, English and some 20 other languages, recorded on other microphones than the
training corpus' (speechocean762), from public Debian packages:
- fillets-ng-data, -cs, -nl: the spoken dialogues of the game Fish Fillets NG (a dozen voice
  actors; Ogg Vorbis, mostly 22.05 kHz; about 3.5 h);
- klettres-data: KLettres' letters and syllables, spoken by a native speaker per language
  (Ogg Vorbis, 44.1 kHz; about 0.85 h).
The recordings were Vorbis-coded by their makers, so they carry its artefacts (they are kept as
found: the codec learns to reproduce its input, not to undo Vorbis). Nothing is committed to the
project: the audio stays in the output folder, as 16 kHz mono 16-bit FLAC, with ``manifest.tsv``.

    python scripts/extra_speech.py /tmp/extra --also ../shared/data/speech/train --also ../shared/data/speech/train
    # then a recipe with data.train_dir: /tmp/extra/with_train.tsv

``--also`` folders are listed (by absolute path) in ``with_train.tsv`` beside the gathered files, so
training draws its crops from both, in proportion to their durations (a folder given twice is
listed twice: its share doubles). Packages that cannot be
fetched are skipped with a note.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from script_errors import run_main  # first: a Ctrl-C while torch loads is one line

# isort: split
import numpy as np
import soundfile as sf
from ood_speech import unpack_debian

from codec.audio import resample
from codec.datasets import find_inputs
from codec.errors import CodecError

PACKAGES = ("fillets-ng-data", "fillets-ng-data-cs", "fillets-ng-data-nl", "klettres-data")
SAMPLE_RATE = 16000
MIN_SECONDS = 0.5        # shorter clips are mostly single syllables and clicks
MIN_PEAK = 10 ** (-50 / 20)   # a clip whose peak stays below -50 dBFS is silence


def convert(source: Path, target: Path) -> float | None:
    """One clip as 16 kHz mono FLAC; its duration in seconds, or None when it is unreadable, too
    short or silent."""
    try:
        audio, rate = sf.read(str(source), dtype="float64", always_2d=True)
    except (RuntimeError, sf.LibsndfileError):
        return None
    mono = resample(audio.mean(axis=1, keepdims=True), rate, SAMPLE_RATE)[:, 0]
    if len(mono) < MIN_SECONDS * SAMPLE_RATE or np.max(np.abs(mono), initial=0.0) < MIN_PEAK:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(target), np.clip(mono, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
    return len(mono) / SAMPLE_RATE


def gather(out: Path, work: Path) -> list[tuple[Path, float, str]]:
    """Convert every Ogg clip of the packages; ``(path, seconds, package)`` for each one kept."""
    rows = []
    for package in PACKAGES:
        folder = unpack_debian(package, work)
        if folder is None:
            continue
        kept = 0
        for source in sorted(folder.rglob("*.ogg")):
            if package.startswith("fillets") and "/sound/" not in source.as_posix():
                continue                       # the game's music
            target = out / package / source.relative_to(folder).with_suffix(".flac")
            seconds = convert(source, target)
            if seconds is not None:
                rows.append((target, seconds, package))
                kept += 1
        hours = sum(seconds for _, seconds, name in rows if name == package) / 3600
        print(f"{package}: {kept} clips, {hours:.2f} h")
    return rows


def write_manifests(out: Path, rows: list[tuple[Path, float, str]], also: list[Path]) -> None:
    lines = ["path\tduration_s\tsample_rate\tsource"]
    lines += [f"{path.relative_to(out).as_posix()}\t{seconds:.3f}\t{SAMPLE_RATE}\t{package}"
              for path, seconds, package in rows]
    (out / "manifest.tsv").write_text("\n".join(lines) + "\n")
    if also:
        paths = [path.resolve() for path, _, _ in rows]
        for folder in also:
            paths += [path.resolve() for path in find_inputs(folder)]
        (out / "with_train.tsv").write_text("path\n" + "\n".join(p.as_posix() for p in paths) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the clips and manifest.tsv (created)")
    parser.add_argument("--also", type=Path, action="append", default=[],
                        help="a folder or manifest of audio to list beside the clips in with_train.tsv")
    args = parser.parse_args()
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for folder in args.also:
            find_inputs(folder)                # a missing folder fails before the downloads
    except OSError as error:
        parser.error(f"cannot make {args.out}: {error.strerror}")
    except CodecError as error:
        parser.error(str(error))
    with tempfile.TemporaryDirectory() as tmp:
        rows = gather(args.out, Path(tmp))
    if not rows:
        sys.exit("error: no clip could be gathered (see the notes above)")
    write_manifests(args.out, rows, args.also)
    print(f"{args.out}: {len(rows)} clips, {sum(s for _, s, _ in rows) / 3600:.2f} h")


if __name__ == "__main__":
    run_main(main)
