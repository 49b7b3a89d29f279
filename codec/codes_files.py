"""``.codes`` files and saved packet streams on disk, read without a model.

What ``codec info`` and the batch commands need to know about a file (its metadata, whether it
is a packet stream saved by ``codec stream --save``) comes from its bytes alone, so this module
needs neither torch nor the network: ``codec info x.codes`` answers without loading them.
"""

from pathlib import Path

from codec.audio import missing
from codec.bitstream import MAGIC, CodesMetadata, check_layout, read_metadata
from codec.errors import CodecError
from codec.packets import STREAM_MAGIC, read_stream_header

HEAD_BYTES = 1 << 16   # the bytes by which a file that is not a .codes file is told apart


def codes_bytes(path: Path) -> bytes:
    """The whole of a ``.codes`` file, or the first ``HEAD_BYTES`` of a file that is not one.

    Raises:
        CodecError: naming the file, if it is a directory or missing.
    """
    if path.is_dir():
        raise CodecError(f"{path}: is a directory, not a .codes file")
    if not path.is_file():
        raise CodecError(f"{path}: {missing(path)}")
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
        if not head.startswith(MAGIC):   # not codes: the error reads its first bytes alone, not 2 GB of them
            return head
        return head + handle.read()


def read_codes_metadata(path: Path | str, whole_file: bool = False) -> CodesMetadata:
    """The metadata of a ``.codes`` file, without decoding it; with ``whole_file``, after checking
    every chunk's length and CRC and the file's end (``bitstream.check_layout``), else the first
    chunk's. Raises CodecError naming the file."""
    path = Path(path)
    data = codes_bytes(path)
    try:
        return check_layout(data) if whole_file else read_metadata(data)
    except CodecError as error:
        raise CodecError(f"{path}: {error}") from None


def is_packet_stream(path: Path | str) -> bool:
    """Whether the file starts like a saved packet stream (``codec stream --save``)."""
    with open(path, "rb") as handle:
        return handle.read(4) == STREAM_MAGIC


def read_stream_info(path: Path, data: bytes | None = None):
    """The header of a saved packet stream: ``(StreamInfo, offset of the first packet)``.

    Raises:
        CodecError: naming the file, if the header is missing or damaged.
    """
    try:
        return read_stream_header(path.read_bytes() if data is None else data)
    except CodecError as error:
        raise CodecError(f"{path}: {error}") from None
