"""Exported ONNX graphs kept between runs of ``codec stream`` (its default runtime, onnx).

Exporting the default model takes seconds of a stream's start-up (all its bitrates: 6 s on one
CPU thread of this project's machine, plus a second to import the exporter), while
the graphs depend only on the model (weights and configuration), this package's code and the
versions of torch, onnx and onnxruntime. So ``codec stream`` exports a model once and keeps the
graphs that stream one bitrate (its encoder graph and the decoder: less than half the export
of every bitrate's) in ``$CODEC_CACHE_DIR`` (else ``$XDG_CACHE_HOME/codec``, else
``~/.cache/codec``), under ``onnx/<model>-<weights>-<float32|int8>-<K>cb-<build>`` for ``K``
codebooks: ``<weights>`` begins the weights' SHA-256 and ``<build>`` a hash of the rest, so that
other weights, another configuration or another version of the code export anew.

An export is written into a hidden folder beside its entry, with ``cache.json`` (the SHA-256 of
each file) last, and then renamed into place: an entry is whole or absent, two streams exporting
at once keep the first one's, and a stopped export leaves no entry (its hidden folder is removed
by a later export once an hour old). An entry whose files do not match ``cache.json`` is exported
again; an entry this process may not read (another user's) is left alone. The ``KEPT_EXPORTS``
most recently used entries stay; older ones are removed (only folders named as entries are ever
removed). Where the folder cannot be written, or for a model loaded without its weights' hash,
the graphs are exported into a temporary folder for the one run, which goes once onnxruntime has
loaded them.
"""

import functools
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from codec.errors import CodecError

KEPT_EXPORTS = 6            # (the default model's float32 export for 6 kbps is 14 MB)
MANIFEST = "cache.json"     # the SHA-256 of each file of an entry, written last


def cache_root() -> Path:
    """The folder ``codec`` keeps derived files in (see the module docstring): a relative
    ``$CODEC_CACHE_DIR`` is taken from the working folder, a relative ``$XDG_CACHE_HOME`` is
    ignored (as the XDG specification asks)."""
    if folder := os.environ.get("CODEC_CACHE_DIR"):
        return Path(os.path.abspath(os.path.expanduser(folder)))
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "codec"


@functools.cache
def _code_hash() -> str:
    """A hash of this package's Python source and of the exporter's and runtime's versions."""
    import onnxruntime
    import torch

    try:   # (read, not imported: importing onnx takes a second, and only exporting needs it)
        onnx_version = importlib.metadata.version("onnx")
    except importlib.metadata.PackageNotFoundError:
        onnx_version = ""
    digest = hashlib.sha256(f"{torch.__version__} {onnx_version} {onnxruntime.__version__}".encode())
    package = Path(__file__).resolve().parent.parent
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


# an entry's name (export_folder): only such folders are ever removed from the cache
ENTRY_NAME = re.compile(r"[A-Za-z0-9._-]+-[0-9a-f]{16}-(float32|int8)-[0-9]+cb-[0-9a-f]{12}")


def export_folder(model, int8: bool, num_codebooks: int) -> Path | None:
    """The cache entry of ``model``'s export for ``num_codebooks`` codebooks (float32 or ``int8``
    weights), or None for a model without ``weights_sha256`` (not loaded by
    ``codec.models.load_model``)."""
    weights = getattr(model, "weights_sha256", None)
    if not weights:
        return None
    configuration = json.dumps(model.config.to_dict(), sort_keys=True, default=str)
    build = hashlib.sha256(f"{_code_hash()}\0{configuration}".encode()).hexdigest()
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", model.config.name).lstrip(".")[:64] or "model"
    kind = "int8" if int8 else "float32"
    return cache_root() / "onnx" / f"{name}-{weights[:16]}-{kind}-{num_codebooks}cb-{build[:12]}"


class _Damaged(Exception):
    """A cache entry whose files are not those its ``cache.json`` lists (exported again)."""


class _Unreadable(Exception):
    """A cache entry this process may not read (another user's): not used, and left alone."""


def _digests(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.iterdir()) if path.is_file() and path.name != MANIFEST}


def _whole(folder: Path) -> bool:
    """Whether ``folder`` holds the files its ``cache.json`` lists. Raises _Damaged (saying how)
    where not, or _Unreadable."""
    try:
        listed = json.loads((folder / MANIFEST).read_text())
        if listed != _digests(folder):
            raise _Damaged("its files do not match its cache.json")
    except PermissionError as error:
        raise _Unreadable(error.strerror) from None
    except OSError as error:
        raise _Damaged(f"{error.strerror or error}{f' ({Path(error.filename).name})' if error.filename else ''}") \
            from None
    except ValueError:
        raise _Damaged("its cache.json is not what codec writes") from None
    return True


def _load(folder: Path, threads: int, num_codebooks: int):
    """The entry's graphs in onnxruntime (``OnnxCodec``); None where it has no entry. Raises
    _Damaged or _Unreadable."""
    from codec.onnx.runtime import OnnxCodec

    if not folder.is_dir():
        return None
    _whole(folder)
    try:
        codec = OnnxCodec(folder, threads, num_codebooks=num_codebooks)
    except CodecError as error:
        raise _Damaged(str(error)) from None
    try:
        os.utime(folder / MANIFEST)   # most recently used: kept by _prune
    except OSError:   # (a read-only cache, or another user's entry: used as it is)
        pass
    return codec


def _prune(root: Path, keep: Path) -> None:
    """Remove all but the ``KEPT_EXPORTS`` most recently used entries (``keep`` among them), entries
    without ``cache.json`` (never whole), and the hidden staging folders of stopped exports
    (``codec.onnx.export.stale_partial_exports``). Only folders named as entries (``ENTRY_NAME``)
    or as staging folders are touched."""
    from codec.onnx.export import stale_partial_exports

    def used(entry: Path) -> float:
        try:
            return (entry / MANIFEST).stat().st_mtime
        except OSError:
            return 0.0

    for leftover in stale_partial_exports(root):   # (a younger one may be another process's export)
        shutil.rmtree(leftover, ignore_errors=True)
    entries = sorted((e for e in root.iterdir() if e.is_dir() and e != keep and ENTRY_NAME.fullmatch(e.name)),
                     key=used, reverse=True)
    for entry in entries[KEPT_EXPORTS - 1:] + [e for e in entries[:KEPT_EXPORTS - 1] if not used(e)]:
        shutil.rmtree(entry, ignore_errors=True)


def _staging_folder(folder: Path) -> Path:
    """A new hidden folder beside ``folder`` to export into. Raises OSError or CodecError where
    the cache cannot hold one (not a folder, not writable, a path onnx cannot take)."""
    from codec.atomic import require_utf8_path

    require_utf8_path(folder, str(folder), "the ONNX exporter")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export.", suffix=".partial", dir=folder.parent))   # (as export_onnx's)
    staging.chmod(0o755)   # (mkdtemp's is 0700: other users of a shared cache read entries too)
    return staging


def _publish(staging: Path, folder: Path) -> None:
    """Rename the finished export ``staging`` into place as ``folder``, unless another process's
    whole export got there first (kept: the first one wins). Raises OSError where it cannot."""
    try:
        staging.rename(folder)
        return
    except OSError:
        try:
            if folder.is_dir() and _whole(folder):
                return
        except (_Damaged, _Unreadable):
            pass
    if folder.is_dir() and not folder.is_symlink():   # a damaged entry, or something else in its place
        shutil.rmtree(folder)
    elif folder.exists() or folder.is_symlink():
        folder.unlink()
    staging.rename(folder)


def load_streaming_export(model, int8: bool, threads: int, num_codebooks: int,
                          on_export: Callable[[Path | None, str | None], None] | None = None):
    """``codec.onnx.runtime.OnnxCodec`` with the graphs that stream ``num_codebooks`` codebooks of
    ``model`` (a loaded codec network): from the cache where an export of this model and this code
    is there, else exported first. ``on_export(folder, reason)`` is called before exporting: with
    the cache entry the export goes to, and the reason it is exported again (None the first
    time); or with None and the reason the export is for this run only.

    Raises:
        CodecError: as ``export_onnx`` (a model with a global code, a failed export).
    """
    from codec.onnx.export import export_onnx
    from codec.onnx.runtime import OnnxCodec

    folder, reason, staging = export_folder(model, int8, num_codebooks), None, None
    if folder is None:
        reason = "the model was not loaded from a folder"
    else:
        try:
            if (codec := _load(folder, threads, num_codebooks)) is not None:
                return codec
        except _Damaged as damage:
            reason = f"the cached export in {folder} was damaged: {damage}"
        except _Unreadable as problem:
            folder, reason = None, f"cannot read the cached export in {folder}: {problem}"
    if folder is not None:
        try:
            staging = _staging_folder(folder)
        except (OSError, CodecError) as error:
            folder, reason = None, f"cannot keep it in {folder.parent}: {_problem(error)}"
    if on_export:
        on_export(folder, reason)
    if staging is not None:
        try:
            export_onnx(model, staging, int8=int8, num_codebooks=num_codebooks)
            (staging / MANIFEST).write_text(json.dumps(_digests(staging), indent=2) + "\n")
            _publish(staging, folder)
            _prune(folder.parent, folder)
            return OnnxCodec(folder, threads, num_codebooks=num_codebooks)
        except (OSError, CodecError) as error:   # (a full disk): exported again below, for this run
            if on_export:
                on_export(None, f"cannot keep it in {folder.parent}: {_problem(error)}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="codec-onnx-") as temporary:   # sessions hold the graphs in memory
        exported = export_onnx(model, temporary, int8=int8, num_codebooks=num_codebooks)
        return OnnxCodec(exported, threads, num_codebooks=num_codebooks)


def _problem(error: Exception) -> str:
    """An OSError's reason without the path (the message names the folder), else the error's text."""
    return error.strerror if isinstance(error, OSError) and error.strerror else str(error)
