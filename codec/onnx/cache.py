"""Exported ONNX graphs kept between runs of ``codec stream`` (its default runtime, onnx).

Exporting the default model takes 10-20 s of a stream's start-up on a laptop-class CPU, while the
graphs depend only on the weights, this package's code and the versions of torch and
onnxruntime. So ``codec stream`` exports a model once and keeps the graphs in
``$CODEC_CACHE_DIR`` (else ``$XDG_CACHE_HOME/codec``, else ``~/.cache/codec``), under
``onnx/<model>-<weights>-<float32|int8>-<code>``, where ``<weights>`` begins the weights' SHA-256
and ``<code>`` a hash of the rest, so that new weights or a new version of the code export anew.
The ``KEPT_EXPORTS`` most recently used exports stay; older ones are removed. Where the folder
cannot be written, or for a model loaded without its weights' hash, the graphs are exported into
a temporary folder for the one run, which goes once onnxruntime has loaded them.
"""

import functools
import hashlib
import importlib.metadata
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from codec.errors import CodecError

KEPT_EXPORTS = 4   # (the default model's float32 export is 33 MB)


def cache_root() -> Path:
    """The folder ``codec`` keeps derived files in (see the module docstring)."""
    if folder := os.environ.get("CODEC_CACHE_DIR"):
        return Path(folder)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "codec"


@functools.cache
def _code_hash() -> str:
    """A hash of this package's Python source and of the exporter's and runtime's versions: what,
    beside the weights, makes the graphs what they are."""
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


def export_folder(model, int8: bool) -> Path | None:
    """The cache folder of ``model``'s export (float32 or ``int8`` weights), or None for a model
    without ``weights_sha256`` (not loaded by ``codec.models.load_model``)."""
    weights = getattr(model, "weights_sha256", None)
    if not weights:
        return None
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", model.config.name)[:64] or "model"
    kind = "int8" if int8 else "float32"
    return cache_root() / "onnx" / f"{name}-{weights[:16]}-{kind}-{_code_hash()[:12]}"


def _prune(onnx_folder: Path, keep: Path) -> None:
    """Remove all but the ``KEPT_EXPORTS`` most recently used exports (``keep`` among them)."""
    def used(entry: Path) -> float:
        try:
            return (entry / "codec.json").stat().st_mtime
        except OSError:
            return 0.0   # (an export that never finished, or another process's, being written)

    entries = sorted((e for e in onnx_folder.iterdir() if e.is_dir() and e != keep), key=used, reverse=True)
    for entry in entries[KEPT_EXPORTS - 1:]:
        if used(entry):   # (one being written has no codec.json yet: left to its writer)
            shutil.rmtree(entry, ignore_errors=True)


def load_streaming_export(model, int8: bool, threads: int,
                          on_export: Callable[[Path | None], None] | None = None):
    """``codec.onnx.runtime.OnnxCodec`` for ``model`` (a loaded codec network): from the cache where
    an export of these weights and this code is there, else exported first (``on_export(folder)``
    is called before, with the cache folder, or None where the export is for this run only).

    Raises:
        CodecError: as ``export_onnx`` (a model with a global code, a failed export).
    """
    from codec.onnx.export import export_onnx
    from codec.onnx.runtime import OnnxCodec

    folder = export_folder(model, int8)
    if folder is not None and (folder / "codec.json").is_file():
        try:
            codec = OnnxCodec(folder, threads)
            os.utime(folder / "codec.json")   # (most recently used: kept by _prune)
            return codec
        except (CodecError, OSError):   # damaged, or removed meanwhile: exported again below
            shutil.rmtree(folder, ignore_errors=True)
    if folder is not None:
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            if not os.access(folder.parent, os.W_OK):
                folder = None
        except OSError:
            folder = None
    if on_export:
        on_export(folder)
    if folder is not None:
        try:
            export_onnx(model, folder, int8=int8)
        except CodecError:   # (could not write the cache: a full disk, a read-only mount): for this run only
            pass
        else:
            _prune(folder.parent, folder)
            return OnnxCodec(folder, threads)
    with tempfile.TemporaryDirectory(prefix="codec-onnx-") as temporary:   # sessions hold the graphs in memory
        return OnnxCodec(export_onnx(model, temporary, int8=int8), threads)
