"""Lists of audio files: a folder (searched recursively), one file, or a manifest.

Manifests: TSV with a ``path`` column, JSONL with a ``path`` key per line, or Kaldi ``wav.scp``
(``utterance-id path`` per line; piped commands are not supported). Relative paths are resolved
against the manifest's folder, then each folder above it (the shared data's manifests list
paths relative to the data root).
"""

import csv
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from codec.audio import AUDIO_SUFFIXES, FFMPEG_ONLY_SUFFIXES, RAW_PCM_SUFFIXES
from codec.errors import CodecError

MANIFEST_SUFFIXES = (".tsv", ".jsonl", ".scp")


def visible_files(root: Path, hidden: list[Path] | None = None) -> list[Path]:
    """Every file below ``root`` that is not hidden (no dot folder, such as a virtual environment's
    ``.venv``, and no dot file, such as the coders' temporary ``.NAME.RANDOM.partial`` files), as
    paths under ``root``. Linked folders are followed, as ``rglob`` does not (Python 3.11); a
    folder reached twice (a link loop, or two links to one folder) is walked once, and a folder
    of the tree itself under its own path, not a link's (whichever name sorts first). With
    ``hidden``, the dot files and dot folders left out are listed there (a folder, not its files)."""
    own = {os.path.realpath(folder) for folder, _, _ in os.walk(root)}   # reached without a link
    files, walked = [], set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in walked:
            subfolders[:] = []
            continue
        walked.add(real)
        if hidden is not None:
            hidden += [Path(folder) / name for name in sorted(subfolders) + sorted(names) if name.startswith(".")]
        subfolders[:] = sorted(name for name in subfolders if not name.startswith(".") and not (
            os.path.islink(os.path.join(folder, name)) and os.path.realpath(os.path.join(folder, name)) in own))
        files += [Path(folder) / name for name in names if not name.startswith(".")]
    return files


@dataclass
class Skipped:
    """What ``find_inputs`` (or a batch's ``codec.batch.find_files``) left out of a folder or glob:
    files that are not of the kind looked for, audio or codes, by suffix (in ``not_audio``), and
    hidden files and folders (dot names, whose files are not counted)."""

    not_audio: list[Path] = field(default_factory=list)
    hidden: list[Path] = field(default_factory=list)

    def summary(self, wanted: str | tuple[str, str] = "audio") -> str | None:
        """One line such as "skipped 3 files that are not audio (.txt, .json) and 1 hidden file or
        folder (.DS_Store)", or None if nothing was skipped; ``wanted`` names the kind looked for,
        or is its (singular, plural) pair: ("a .codes file", ".codes files").
        Looking for audio, files of audio formats that are not read (.m4a, raw PCM) are counted
        apart, with how to convert them."""
        parts = []
        convertible, other = [], []   # (one pass: a folder may hold thousands of other files)
        for path in self.not_audio:
            (convertible if wanted == "audio" and path.suffix.lower() in _CONVERTIBLE else other).append(path)
        if convertible:
            suffixes = [suffix for suffix, _ in _suffixes(convertible)]
            them = "it" if len(convertible) == 1 else "them"
            coded = [suffix for suffix in suffixes if suffix not in RAW_PCM_SUFFIXES]
            hows = [f"convert {them} first, e.g. ffmpeg -i in{coded[0]} in.wav"] if coded else []
            if len(coded) < len(suffixes):   # raw PCM: ffmpeg needs its format, rate and channels
                hows.append("wrap raw PCM as WAV, e.g. ffmpeg -f s16le -ar 16000 -ac 1 -i in.raw in.wav")
            how = "; ".join(hows)
            formats = "a format" if len(suffixes) == 1 else "formats"
            parts.append(f"{_count(len(convertible), 'audio file')} in {formats} not read "
                         f"({_shown(convertible)}: {how})")
        if other:
            one, many = (wanted, wanted) if isinstance(wanted, str) else wanted
            kind = f"is not {one}" if len(other) == 1 else f"are not {many}"
            parts.append(f"{_count(len(other), 'file')} that {kind} ({_shown(other)})")
        if self.hidden:
            names = sorted({path.name for path in self.hidden})
            more = ", ..." if len(names) > 3 else ""
            parts.append(f"{_count(len(self.hidden), 'hidden file or folder', 'hidden files or folders')} "
                         f"({', '.join(names[:3])}{more})")
        if not parts:
            return None
        return f"skipped {', '.join(parts[:-1])} and {parts[-1]}" if len(parts) > 1 else f"skipped {parts[0]}"


_CONVERTIBLE = RAW_PCM_SUFFIXES + FFMPEG_ONLY_SUFFIXES


def _suffixes(paths: list[Path]) -> list[tuple[str, int]]:
    return Counter(path.suffix.lower() or "no suffix" for path in paths).most_common()


def _shown(paths: list[Path]) -> str:
    """The commonest five suffixes of ``paths``, "..." if there are more."""
    suffixes = [suffix for suffix, _ in _suffixes(paths)]
    return ", ".join(suffixes[:5]) + (", ..." if len(suffixes) > 5 else "")


def _count(number: int, one: str, many: str | None = None) -> str:
    return f"{number} {one if number == 1 else many or one + 's'}"


def find_inputs(source: Path | str, skipped: Skipped | None = None) -> list[Path]:
    """Audio files of a folder (hidden ones left out), a single audio file, or a manifest. With
    ``skipped``, a folder's files and folders that were left out are listed there.

    Raises:
        CodecError: if the source is missing, holds no audio, or a manifest is malformed.
    """
    source = Path(source)
    left_out = Skipped()   # added to the caller's skipped, and named in the error if no audio is found
    if source.is_dir():
        found = visible_files(source, left_out.hidden)
        files = sorted(p for p in found if p.suffix.lower() in AUDIO_SUFFIXES)
        left_out.not_audio = sorted(p for p in found if p.suffix.lower() not in AUDIO_SUFFIXES)
        if skipped is not None:
            skipped.not_audio += left_out.not_audio
            skipped.hidden += left_out.hidden
    elif source.is_file() and source.suffix.lower() in MANIFEST_SUFFIXES:
        files = [_resolve(source, entry) for entry in _manifest_paths(source)]
    elif source.is_file() and source.suffix.lower() in AUDIO_SUFFIXES:
        files = [source]
    elif not source.exists():
        stdin = " (stdin is not read here: give a file, a folder or a manifest)" if str(source) == "-" else ""
        raise CodecError(f"{source}: no such file or folder{stdin}")
    else:
        raise CodecError(f"{source}: not a folder, an audio file, or a manifest ({', '.join(MANIFEST_SUFFIXES)})")
    if not files and source.is_file():   # a manifest with a header or nothing
        raise CodecError(f"{source}: the manifest lists no files")
    if not files:
        note = f"; {summary}" if (summary := left_out.summary()) else ""
        raise CodecError(f"{source}: no audio files ({', '.join(AUDIO_SUFFIXES)}) found{note}")
    return files


def _manifest_paths(manifest: Path) -> list[str]:
    """The paths a manifest lists, in order.

    Raises:
        CodecError: naming the manifest (and the line) that cannot be read or holds no path.
    """
    try:
        lines = manifest.read_text(encoding="utf-8-sig").splitlines()   # (a BOM, as Excel writes one, is not text)
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "not UTF-8 text"
        raise CodecError(f"{manifest}: cannot read the manifest ({reason})") from None
    suffix = manifest.suffix.lower()
    if suffix == ".tsv":
        reader = csv.DictReader(lines, delimiter="\t")
        if reader.fieldnames is not None and "path" not in reader.fieldnames:
            raise CodecError(f"{manifest}: the TSV header has no 'path' column (its columns: "
                             f"{', '.join(map(repr, reader.fieldnames))})")
        return [_listed_path(manifest, reader.line_num, row.get("path"), "a 'path' column value")
                for row in reader]
    paths = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if suffix == ".scp":
            fields = line.split(maxsplit=1)
            if len(fields) != 2 or fields[1].rstrip().endswith("|"):
                raise CodecError(f"{manifest}:{number}: expected 'utterance-id path' (no piped commands)")
            paths.append(fields[1].strip())
            continue
        try:
            entry = json.loads(line)["path"]
        except (ValueError, KeyError, TypeError, RecursionError):
            raise CodecError(f"{manifest}:{number}: not a JSON object with a 'path' key") from None
        paths.append(_listed_path(manifest, number, entry, "a 'path' that is a string"))
    return paths


def _listed_path(manifest: Path, number: int, entry, expected: str) -> str:
    """``entry``, a manifest's path on line ``number``, if it is a non-empty string.

    Raises:
        CodecError: naming the manifest's line and what it should hold.
    """
    if not isinstance(entry, str) or not entry.strip():
        raise CodecError(f"{manifest}:{number}: expected {expected} (a file path), got {entry!r}")
    return entry.strip()   # (spaces around a TSV cell are invisible; a Kaldi .scp's are dropped too)


def _resolve(manifest: Path, entry: str) -> Path:
    candidate = Path(entry)
    if candidate.is_absolute():
        return candidate
    for folder in [manifest.parent, *manifest.resolve().parent.parents]:
        if (folder / candidate).is_file():
            return folder / candidate
    return manifest.parent / candidate   # missing: left out where read, as a missing absolute path is
