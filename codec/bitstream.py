"""The ``.codes`` container, format version 2. This file is its specification.

All integers are little-endian.

    offset  size  field
    0       4     magic b"CODC"
    4       1     format version (2; readers take 1 too, see below)
    5       1     flags: bit 0 set = entropy-coded payload, bit 1 set = global-code section,
                  bit 2 set = level gain (all three below), other bits zero
    6       2     uint16: length M of the metadata in bytes
    8       M     metadata: UTF-8 JSON object (keys below), no whitespace
    8+M     G     global-code section, only with flag bit 1 (else G = 0)
    8+M+G   ...   chunks, one after another up to the end of the file; each chunk is
                    P       payload: bit-packed codes, P given by the metadata (below)
                    uint32  CRC-32 (zlib) of the payload; the first chunk's CRC also covers
                            the header and metadata before it, so every byte is checked, and
                            each later chunk's CRC starts from the CRC before it (zlib's
                            ``crc32(payload, previous_crc)``), so chunks swapped, repeated or
                            left out in the middle fail it too

Metadata keys: ``model`` (name), ``weights`` (first 8 hex digits of the SHA-256 of the model's
weights file; readers refuse more than 64 characters), ``sample_rate`` (Hz, of the original audio;
1000 to 384000), ``channels``, ``samples`` (per channel, at ``sample_rate``), ``frame_rate`` (code
frames per second), ``codebooks`` (codebooks used, K), ``codebook_size``, ``frames`` (F, code
frames per channel: the frames that cover the samples, ``ceil(samples * frame_rate /
sample_rate)``; readers allow a frame either way, and more for a model with a global code,
whose encoder wrote extra frames before 2026-12-04).

With bit 2 of the flags set, the metadata also has ``gain_db``: the gain (a number from -60 to
60 dB) by which the encoder scaled the audio before coding it, to bring it to the level its model
was trained at (``codec.level``), plus, for codes chosen by latent refinement, the level the refined
codes decode at against that audio (``codec.coding.decoded_level_db``); a decoder scales its output by
``10 ** (-gain_db / 20)``. Where the channels got different gains, ``gain_db`` is a list of C
such numbers, one per channel.
A reader that predates the flag refuses such a file by its flags rather than play it at the wrong level.

With bit 0 of the flags set, the metadata also names the entropy model (``entropy_model``, and
``entropy_weights``: the first 8 hex digits of its weights' SHA-256), and each chunk is

                    uint32  payload length P in bytes
                    P       payload: the chunk's codes range-coded with the entropy model
                            (``codec.entropy``), a whole number of 32-bit words
                    uint32  CRC-32 of the length and payload (the first chunk's also covers the
                            header and metadata; a later chunk's starts from the CRC before it)
                    uint32  CRC-32 of the chunk's codes, bit-packed as below: a decoder whose
                            model disagrees with the encoder's is caught here

With bit 1 of the flags set (models with a time-invariant code, TiCodec), the metadata also has
``global_codebooks`` (G codes per channel) and ``global_codebook_size``, and the global-code
section holds the C x G codes, channel by channel, each an unsigned
``ceil(log2(global_codebook_size))``-bit number, MSB first, zero-padded to a whole byte. It is
covered by the first chunk's CRC, and its bytes count in the file's bitrate.

Payload: chunk ``j`` holds frames ``[j * 1500, (j + 1) * 1500)`` (the last chunk fewer; a file
of 0 frames has one empty chunk, for its CRC); inside
a chunk, codes are ordered frame by frame, then channel, then codebook, each written as an
unsigned ``ceil(log2(codebook_size))``-bit number, most significant bit first, and the chunk is
padded with zero bits to a whole byte, so ``P = ceil(frames_in_chunk * C * K * bits / 8)``.
The header and metadata are kept small on purpose: a file is at most ``nominal bitrate x duration
+ 240`` bytes for the shipped models, plus 4 bytes per chunk after the first and up to 7 per
channel where the channels have gains of their own (header, metadata and CRCs, and the part of the
last frame that the audio does not fill; 216 at most on the dev files, at 12 kbps; 221 for a short
file at 384 kHz). Entropy-coded files (flag bit 0) carry the entropy model's name and the range
coder's flush besides: a 1-sample file from conv-16k at 6 kbps is about 245 bytes.

Version 1 differs in one point: a chunk after the first has a CRC of its own bytes alone, which
a chunk moved to another place passes. Readers read both; writers write version 2. A file of one
chunk (up to 30 s) is the same in both but for the version byte and its CRC.
"""

import json
import math
import os
import re
import struct
import zlib
from dataclasses import MISSING, asdict, dataclass, fields

import numpy as np

from codec.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, starts_as_audio
from codec.errors import CodecError

MAGIC = b"CODC"
VERSION = 2
READABLE_VERSIONS = (1, 2)
FRAMES_PER_CHUNK = 1500
FLAG_ENTROPY = 1
FLAG_GLOBAL = 2
FLAG_GAIN = 4
MAX_GAIN_DB = 60.0
MAX_CODEBOOK_SIZE = 1 << 16
MAX_CHANNELS = 1024
MAX_CODEBOOKS = 1024
MAX_FRAMES = 1 << 40
MAX_WEIGHTS_CHARS = 64   # writers write 8 hex digits; a whole SHA-256 is 64 (longer: damage, shown in messages)
_HEADER = struct.Struct("<4sBBH")
_UINT32 = struct.Struct("<I")


class BitstreamError(CodecError):
    """A ``.codes`` file that is not valid: wrong magic or version, truncated, corrupted."""


@dataclass
class CodesMetadata:
    model: str
    weights: str
    sample_rate: int
    channels: int
    samples: int
    frame_rate: float
    codebooks: int
    codebook_size: int
    frames: int
    entropy_model: str | None = None    # only in entropy-coded files
    entropy_weights: str | None = None
    global_codebooks: int | None = None       # only with a global-code section
    global_codebook_size: int | None = None
    gain_db: float | list[float] | None = None   # in files whose input was scaled (codec.level); [C] if per channel

    @property
    def entropy_coded(self) -> bool:
        return self.entropy_model is not None

    @property
    def bits_per_code(self) -> int:
        return max(1, math.ceil(math.log2(self.codebook_size)))

    @property
    def has_global(self) -> bool:
        return self.global_codebooks is not None

    def global_section_bytes(self) -> int:
        if not self.has_global:
            return 0
        return math.ceil(self.channels * self.global_codebooks * _bits(self.global_codebook_size) / 8)


@dataclass
class CodesFile:
    metadata: CodesMetadata
    codes: np.ndarray      # [C, K, F] integer codes
    global_codes: np.ndarray | None = None   # [C, G] time-invariant codes (TiCodec models)


def pack_codes(values: np.ndarray, bits: int) -> bytes:
    """``[N]`` non-negative integers -> ``bits`` bits each, MSB first, zero-padded to a byte."""
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    bit_matrix = (values.astype(np.int64)[:, None] >> shifts) & 1
    return np.packbits(bit_matrix.astype(np.uint8).reshape(-1)).tobytes()


def unpack_codes(data: bytes, count: int, bits: int) -> np.ndarray:
    """The inverse of ``pack_codes``: ``count`` integers of ``bits`` bits -> ``[count]`` int64."""
    bit_matrix = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:count * bits].reshape(count, bits)
    return (bit_matrix.astype(np.int64) << np.arange(bits - 1, -1, -1, dtype=np.int64)).sum(axis=1)


def codes_problem(codes_file: CodesFile) -> str | None:
    """Why the codes (and global codes) disagree with their metadata's shape or codebook size;
    None if they agree."""
    meta = codes_file.metadata
    problem = metadata_problem(meta)
    if problem:
        return f"metadata that a .codes file cannot hold ({problem})"
    checks = [("codes", codes_file.codes, (meta.channels, meta.codebooks, meta.frames), meta.codebook_size,
               " (channels, codebooks, frames)")]
    if meta.has_global:
        checks.append(("global codes", codes_file.global_codes, (meta.channels, meta.global_codebooks),
                       meta.global_codebook_size, ""))
    elif codes_file.global_codes is not None:   # the file would drop them without a word
        return "global codes were given, but the metadata has no global codebooks (global_codebooks is None)"
    for what, values, shape, size, axes in checks:
        if values is None:   # (as an array, None has shape ())
            return f"{what} are missing: the metadata says {shape}{axes}"
        values = np.asarray(values)
        if values.shape != shape:
            return f"{what} of shape {values.shape} do not match their metadata's{axes} {shape}"
        if values.size and (not np.issubdtype(values.dtype, np.integer) or values.min() < 0 or values.max() >= size):
            return f"{what} must be integers in [0, {size})"
    return None


def to_bytes(codes_file: CodesFile, entropy_coder=None) -> bytes:
    """Serialize; ``codes`` must be ``[channels, codebooks, num_frames]`` as the metadata says.

    With ``entropy_coder`` (a ``codec.entropy.EntropyCoder``), the payload is range-coded and the
    metadata names the coder's model, which decoding will need.

    Raises:
        ValueError: if the codes' shape or values disagree with the metadata.
    """
    problem = codes_problem(codes_file)
    if problem:
        raise ValueError(problem)
    meta, codes = codes_file.metadata, np.asarray(codes_file.codes)
    values = asdict(meta)
    # the entropy fields describe this file's payload, not the codes: a plain write drops them
    values["entropy_model"], values["entropy_weights"] = (
        (entropy_coder.name, entropy_coder.weights[:8]) if entropy_coder is not None else (None, None))
    metadata = json.dumps({k: v for k, v in values.items() if v is not None}, separators=(",", ":")).encode()
    if len(metadata) > 0xFFFF:
        raise ValueError(f"metadata of {len(metadata)} bytes (a model name that long?); a .codes file holds "
                         f"at most 65535")
    flags = ((FLAG_ENTROPY if entropy_coder else 0) | (FLAG_GLOBAL if meta.has_global else 0)
             | (FLAG_GAIN if meta.gain_db is not None else 0))
    parts = [_HEADER.pack(MAGIC, VERSION, flags, len(metadata)), metadata]
    if meta.has_global:
        global_codes = np.asarray(codes_file.global_codes)
        parts.append(pack_codes(global_codes.reshape(-1), _bits(meta.global_codebook_size)))
    frame_major = codes.transpose(2, 0, 1)  # [F, C, K]
    crc = 0
    for start in _chunk_starts(meta.frames):
        chunk = frame_major[start:start + FRAMES_PER_CHUNK]
        packed = pack_codes(chunk.reshape(-1), meta.bits_per_code)
        if entropy_coder is None:
            body, codes_crc = packed, b""
        else:
            coded = entropy_coder.encode_chunk(np.ascontiguousarray(chunk.transpose(1, 2, 0)))
            body, codes_crc = _UINT32.pack(len(coded)) + coded, _UINT32.pack(zlib.crc32(packed))
        crc = zlib.crc32(b"".join(parts) + body) if start == 0 else zlib.crc32(body, crc)   # chained
        parts += [body, _UINT32.pack(crc), codes_crc]
    return b"".join(parts)


def _bits(codebook_size: int) -> int:
    return max(1, math.ceil(math.log2(codebook_size)))


def _chunk_starts(frames: int) -> range:
    return range(0, max(frames, 1), FRAMES_PER_CHUNK)


def _is_gain(value) -> bool:
    """Whether a metadata ``gain_db`` is a number of dB a file can carry (NaN is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= MAX_GAIN_DB


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 63


def _invalid_field(meta: CodesMetadata) -> str | None:
    """The first metadata field whose value the .codes format cannot hold; None if there is none.
    Each check may assume the ones before it passed (types before ranges)."""
    checks = [(name, lambda name=name: _is_count(getattr(meta, name)))
              for name in ("sample_rate", "channels", "samples", "codebooks", "codebook_size", "frames")]
    checks += [
        ("sample_rate", lambda: MIN_SAMPLE_RATE <= meta.sample_rate <= MAX_SAMPLE_RATE),
        ("channels", lambda: 1 <= meta.channels <= MAX_CHANNELS),
        ("codebooks", lambda: 1 <= meta.codebooks <= MAX_CODEBOOKS),
        ("frames", lambda: meta.frames <= MAX_FRAMES),
        ("codebook_size", lambda: 2 <= meta.codebook_size <= MAX_CODEBOOK_SIZE),
        ("model", lambda: isinstance(meta.model, str)),
        ("weights", lambda: isinstance(meta.weights, str) and len(meta.weights) <= MAX_WEIGHTS_CHARS),
        ("frame_rate", lambda: isinstance(meta.frame_rate, (int, float)) and not isinstance(meta.frame_rate, bool)
         and math.isfinite(meta.frame_rate) and 0 < meta.frame_rate <= meta.sample_rate),
        ("entropy_model", lambda: meta.entropy_model is None or isinstance(meta.entropy_model, str)),
        ("entropy_weights", lambda: (meta.entropy_weights is None or (
            isinstance(meta.entropy_weights, str) and len(meta.entropy_weights) <= MAX_WEIGHTS_CHARS))
         and (meta.entropy_model is None) == (meta.entropy_weights is None)),
        ("global_codebooks", lambda: meta.global_codebooks is None
         or (isinstance(meta.global_codebooks, int) and not isinstance(meta.global_codebooks, bool)
             and 1 <= meta.global_codebooks <= MAX_CODEBOOKS)),
        ("global_codebook_size", lambda: (meta.global_codebooks is None) == (meta.global_codebook_size is None)
         and (meta.global_codebook_size is None
              or (isinstance(meta.global_codebook_size, int) and not isinstance(meta.global_codebook_size, bool)
                  and 2 <= meta.global_codebook_size <= MAX_CODEBOOK_SIZE))),
        ("gain_db", lambda: meta.gain_db is None or _is_gain(meta.gain_db)
         or (isinstance(meta.gain_db, list) and len(meta.gain_db) == meta.channels
             and all(map(_is_gain, meta.gain_db)))),
    ]
    return next((name for name, valid in checks if not valid()), None)


def shown_value(text: str) -> str:
    """A field's value (its repr) as messages show it: at most 40 characters (a damaged field may be long)."""
    return text if len(text) <= 40 else text[:37] + "..."


def metadata_problem(meta: CodesMetadata) -> str | None:
    """Why ``meta`` is not metadata that the .codes format can hold (the field with an invalid
    value, or the frames its samples need); None if it is. Readers and writers check the same."""
    field = _invalid_field(meta)
    if field is not None:
        return f"invalid value of {field}: {shown_value(repr(getattr(meta, field)))}"
    covered = meta.samples * meta.frame_rate / meta.sample_rate   # frames the samples need (ceil)
    # (a frame of slack for rounding; more for a global code's model, as its encoder once padded)
    if not -1 < meta.frames - covered < (math.inf if meta.has_global else 2):
        return (f"{meta.samples} samples at {meta.sample_rate} Hz need about {math.ceil(covered)} "
                f"frames at {meta.frame_rate:g} Hz, not {meta.frames}")
    return None


def _parse_metadata(raw: bytes) -> CodesMetadata:
    where = f"corrupt metadata at bytes {_HEADER.size}-{_HEADER.size + len(raw) - 1}"
    try:
        values = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):   # (also what a wrong length leaves)
        raise BitstreamError(f"{where} (not JSON, or the metadata's length field (offset 6) is damaged)") from None
    try:
        required = {f.name for f in fields(CodesMetadata) if f.default is MISSING}
        optional = {f.name for f in fields(CodesMetadata)} - required
        if not isinstance(values, dict) or not required <= set(values) <= required | optional:
            raise ValueError("unexpected keys")
        meta = CodesMetadata(**values)
    except (ValueError, TypeError):
        raise BitstreamError(f"{where} (not the JSON object that the .codes format requires)") from None
    problem = metadata_problem(meta)
    if problem:
        raise BitstreamError(f"{where} ({problem})")
    return meta


def read_metadata(data: bytes) -> CodesMetadata:
    """The metadata alone (to choose the models that decoding needs), checked by the first
    chunk's CRC, which covers it. Raises BitstreamError."""
    return _first_chunk_metadata(data, _read_head)


def parses_as_codes_file(data: bytes) -> bool:
    """Whether ``data`` has a .codes file's header, metadata and first chunk, its CRC passing,
    whatever its first four bytes (the magic) are."""
    try:
        _first_chunk_metadata(MAGIC + data[len(MAGIC):], _parse_head)
    except BitstreamError:
        return False
    return True


def _first_chunk_metadata(data: bytes, read_head) -> CodesMetadata:
    meta, offset = read_head(data)
    _, offset = _read_global(data, meta, offset)
    _check_first_chunk(data, meta, offset)
    return meta


def _past_the_end(index: int, offset: int, end: int, size: int, length_field: bool) -> str:
    """Why chunk ``index`` (bytes ``offset`` to ``end``) is not all in a file of ``size`` bytes: cut
    short, or (an entropy-coded chunk's length is a field of its own) that field is damaged."""
    where = f"chunk {index} (bytes {offset}-{end - 1}); the file has {size} bytes"
    if length_field:
        return f"truncated in {where}, or the chunk's length field is damaged"
    return f"truncated in {where}"


def _check_first_chunk(data: bytes, meta: CodesMetadata, offset: int) -> None:
    """Verify the CRC of everything up to the end of chunk 0 (header, metadata, global section)."""
    if meta.entropy_coded:
        if len(data) < offset + 4:
            raise BitstreamError(f"truncated at chunk 0 (byte {offset})")
        length = 4 + _UINT32.unpack_from(data, offset)[0]
    else:
        frames = min(FRAMES_PER_CHUNK, meta.frames)
        length = math.ceil(frames * meta.channels * meta.codebooks * meta.bits_per_code / 8)
    end = offset + length
    trailer = (2 if meta.entropy_coded else 1) * _UINT32.size   # its CRC (and the codes' CRC), as _verified_chunks
    if len(data) < end + trailer:
        raise BitstreamError(_past_the_end(0, offset, end + trailer, len(data), meta.entropy_coded))
    if zlib.crc32(data[:end]) != _UINT32.unpack_from(data, end)[0]:
        raise BitstreamError(f"CRC mismatch (bytes 0-{end - 1}, header, metadata and chunk 0): the file is corrupted")


_MODEL_FOLDER_HINT = "; a model is given by its folder (such as models/esc-16k-small, or a training run's " \
                     "run.out_dir/model)"


def _other_file_kind(data: bytes) -> str | None:
    """What a file given where a .codes file goes is, from its first bytes, as the rest of "it is
    ...", or None: a zip archive (as PyTorch saves a checkpoint, and NumPy an .npz), safetensors
    (an 8-byte header length, then JSON: a model's weights) or JSON text (a model's config.json
    or an ONNX export's codec.json where it reads as one); a model's files come with where a model
    is given instead."""
    if data.startswith(b"PK\x03\x04"):
        return "a zip archive (as a PyTorch training checkpoint, .pt, or a NumPy .npz is)" + _MODEL_FOLDER_HINT
    if len(data) > 10 and data[8:10] == b'{"' and int.from_bytes(data[:8], "little") <= len(data) - 8:
        return "a safetensors file (a model's weights)" + _MODEL_FOLDER_HINT
    if re.match(rb'\s*\{\s*["}]', data[:64]):
        config = b'"codebook_size"' in data[:4096] and b'"sample_rate"' in data[:4096]
        if config and b'"graphs"' in data and b'"frame_size"' in data[:4096]:
            return ("the codec.json of an ONNX export (codec export), which onnxruntime runs through "
                    "codec.onnx.runtime (OnnxCodec(folder)); its codes come from OnnxCodec.encode")
        return "a model's config.json" + _MODEL_FOLDER_HINT if config else "JSON text"
    return None


def _read_head(data: bytes) -> tuple[CodesMetadata, int]:
    try:
        return _parse_head(data)
    except BitstreamError:
        if data[:len(MAGIC)] == MAGIC and _stream_with_damaged_magic(data):
            raise BitstreamError("corrupt header: the magic bytes at offset 0 read CODC (a .codes file's), but the "
                                 "file's CRC shows a packet stream (CODS, saved by codec stream --save): the file "
                                 "is corrupted") from None
        raise


def _stream_with_damaged_magic(data: bytes) -> bool:
    """Whether ``data``, a .codes file by its magic, has a packet stream's header with the
    stream's magic restored (the two magics differ by one bit)."""
    from codec.packets import STREAM_MAGIC, parse_stream_header  # (codec.packets imports this module)

    try:
        parse_stream_header(STREAM_MAGIC + data[len(STREAM_MAGIC):])
    except BitstreamError:
        return False
    return True


def _parse_head(data: bytes) -> tuple[CodesMetadata, int]:
    if not data:
        raise BitstreamError("is empty (0 bytes), not a .codes file")
    if len(data) < _HEADER.size and not MAGIC.startswith(data[:len(MAGIC)]):
        raise BitstreamError("not a .codes file (wrong magic bytes at offset 0)")
    if len(data) < _HEADER.size:
        raise BitstreamError(f"truncated: {len(data)} byte{'' if len(data) == 1 else 's'} is shorter than the "
                             f"{_HEADER.size}-byte header")
    magic, version, flags, metadata_length = _HEADER.unpack_from(data)
    if magic != MAGIC:
        if starts_as_audio(data[:4]):   # (a recording renamed, or the input given twice)
            raise BitstreamError("not a .codes file: it begins as an audio file does (WAV, FLAC, Ogg, MP3, ...); "
                                 "codec encode makes .codes files from audio")
        if kind := _other_file_kind(data):   # a model's or a training run's file, given where codes go
            raise BitstreamError(f"not a .codes file: it is {kind}")
        raise BitstreamError("not a .codes file (wrong magic bytes at offset 0)")
    if version not in READABLE_VERSIONS:
        if shown := _readable_with_damaged_version(data):
            raise BitstreamError(f"corrupt header: the version byte at offset 4 reads {version}, but the file's "
                                 f"CRC shows a version {shown} file: the file is corrupted")
        if version > VERSION + 15:   # (versions come one at a time: junk, not a newer codec's file)
            why = " (far beyond any version yet: the file is damaged, or not a .codes file)"
        else:
            why = " (written by a newer codec; upgrade to read it)" if version > VERSION else ""
        raise BitstreamError(f"unsupported .codes format version {version} at offset 4; this codec reads "
                             f"versions {READABLE_VERSIONS[0]} to {VERSION}{why}")
    if flags & ~(FLAG_ENTROPY | FLAG_GLOBAL | FLAG_GAIN):
        raise BitstreamError(f"unsupported flags {flags:#04x} at offset 5")
    offset = _HEADER.size + metadata_length
    if len(data) < offset:
        raise BitstreamError(f"truncated in the metadata: it should end at byte {offset}, the file has {len(data)} "
                             f"bytes, or the metadata's length field (offset 6) is damaged")
    meta = _parse_metadata(data[_HEADER.size:offset])
    if bool(flags & FLAG_ENTROPY) != meta.entropy_coded:
        raise BitstreamError("corrupt header: the entropy-coding flag at offset 5 disagrees with the metadata")
    if bool(flags & FLAG_GLOBAL) != meta.has_global:
        raise BitstreamError("corrupt header: the global-code flag at offset 5 disagrees with the metadata")
    if bool(flags & FLAG_GAIN) != (meta.gain_db is not None):
        raise BitstreamError("corrupt header: the gain flag at offset 5 disagrees with the metadata")
    return meta, offset


def _readable_with_damaged_version(data: bytes) -> int | None:
    """The readable version as which ``data`` passes once its version byte is restored, if any:
    then that byte was damaged, and "written by a newer codec" would send the user the wrong way."""
    for version in READABLE_VERSIONS:
        try:
            read_metadata(data[:4] + bytes([version]) + data[5:])
        except BitstreamError:
            continue
        return version
    return None


def read_global_codes(data: bytes) -> np.ndarray | None:
    """The global (time-invariant) codes ``[C, G]`` of a file that has them, else None, without
    decoding the rest (``codec info``; their CRC is checked when the file is decoded).
    Raises BitstreamError."""
    meta, offset = _read_head(data)
    codes, end = _read_global(data, meta, offset)
    _check_first_chunk(data, meta, end)
    return codes


def _read_global(data: bytes, meta: CodesMetadata, offset: int) -> tuple[np.ndarray | None, int]:
    if not meta.has_global:
        return None, offset
    end = offset + meta.global_section_bytes()
    if len(data) < end:
        raise BitstreamError(f"truncated in the global-code section (bytes {offset}-{end - 1}); the file has "
                             f"{len(data)} bytes")
    count = meta.channels * meta.global_codebooks
    codes = unpack_codes(data[offset:end], count, _bits(meta.global_codebook_size))
    return codes.reshape(meta.channels, meta.global_codebooks), end


def _verified_chunks(data: bytes, meta: CodesMetadata, offset: int):
    """``(index, frames, payload, offset of the codes' CRC or None)`` of every chunk from
    ``offset`` on, each checked for its length and CRC; then that no bytes follow the last.

    Raises:
        BitstreamError: truncation, a CRC mismatch or trailing bytes, naming the bytes.
    """
    chained, previous_crc = data[4] >= 2, 0   # (version 1: a later chunk's CRC covers its own bytes alone)
    for index, start in enumerate(_chunk_starts(meta.frames)):
        chunk_frames = max(0, min(FRAMES_PER_CHUNK, meta.frames - start))
        if meta.entropy_coded:
            if len(data) < offset + 4:
                raise BitstreamError(f"truncated at chunk {index} (byte {offset})")
            length = 4 + _UINT32.unpack_from(data, offset)[0]
            trailer = 2 * _UINT32.size
        else:
            length = math.ceil(chunk_frames * meta.channels * meta.codebooks * meta.bits_per_code / 8)
            trailer = _UINT32.size
        end = offset + length + trailer
        if len(data) < end:
            raise BitstreamError(_past_the_end(index, offset, end, len(data), meta.entropy_coded))
        (crc,) = _UINT32.unpack_from(data, offset + length)
        computed = zlib.crc32(data[:offset + length]) if index == 0 else \
            zlib.crc32(data[offset:offset + length], previous_crc if chained else 0)
        if computed != crc:
            span = f"bytes 0-{offset + length - 1}, header, metadata and chunk 0" if index == 0 else \
                f"bytes {offset}-{offset + length - 1}, chunk {index}"
            moved = " (or the chunk is out of its place)" if index else ""
            raise BitstreamError(f"CRC mismatch ({span}){moved}: the file is corrupted")
        previous_crc = crc
        yield index, chunk_frames, data[offset:offset + length], (offset + length + 4 if meta.entropy_coded else None)
        offset = end
    if offset != len(data):
        extra = len(data) - offset
        raise BitstreamError(f"{extra} unexpected byte{'s' if extra > 1 else ''} after the last chunk (from byte "
                             f"{offset})")


def check_layout(data: bytes) -> CodesMetadata:
    """The metadata of a ``.codes`` file whose every chunk was checked for its length and CRC,
    with no bytes after the last: all that can be checked without unpacking the codes (or, for
    an entropy-coded file, without its entropy model).

    Raises:
        BitstreamError: as ``from_bytes``.
    """
    meta, offset = _read_head(data)
    _, offset = _read_global(data, meta, offset)
    for _ in _verified_chunks(data, meta, offset):
        pass
    return meta


def codes_bytes(data: bytes) -> int:
    """How many bytes of a ``.codes`` file hold codes: the global codes and every chunk's packed
    or range-coded codes. The rest (header, metadata, chunk lengths, CRCs) is its overhead.

    Raises:
        BitstreamError: as ``check_layout``.
    """
    meta, offset = _read_head(data)
    _, end = _read_global(data, meta, offset)
    length_field = _UINT32.size if meta.entropy_coded else 0   # an entropy-coded chunk starts with its length
    return end - offset + sum(len(payload) - length_field for _, _, payload, _ in _verified_chunks(data, meta, end))


def _codes_array(meta: CodesMetadata) -> np.ndarray:
    """An empty ``[F, C, K]`` int64 array for the file's codes.

    Raises:
        BitstreamError: if it would not fit in this machine's memory. A range-coded chunk may be a
            few bytes for 1500 frames, so a small file can claim any frame count its chunks carry.
    """
    shape = (meta.frames, meta.channels, meta.codebooks)
    needed = math.prod(shape) * np.dtype(np.int64).itemsize
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):   # (no sysconf: Windows)
        memory = math.inf
    problem = (f"its metadata claims {meta.frames} frames x {meta.channels} channels x {meta.codebooks} codebooks, "
               f"{needed / 2**30:.1f} GiB of codes")
    if needed > memory:
        raise BitstreamError(f"{problem}, more than this machine's memory ({memory / 2**30:.1f} GiB): the file is "
                             f"damaged, or was made for a larger machine")
    try:
        return np.empty(shape, dtype=np.int64)
    except MemoryError:
        raise BitstreamError(f"{problem}, more than can be allocated here") from None


def from_bytes(data: bytes, entropy_coder=None) -> CodesFile:
    """Parse and verify a ``.codes`` file.

    ``entropy_coder`` is needed for entropy-coded files (``read_metadata`` names its model).

    Raises:
        BitstreamError: wrong magic, unknown version, truncation, trailing bytes, CRC mismatch,
            invalid metadata, or an entropy-coded file without (or with the wrong) entropy model,
            each with a one-line message.
    """
    meta, offset = _read_head(data)
    global_codes, offset = _read_global(data, meta, offset)  # chunk 0's CRC covers it: checked below
    if meta.entropy_coded:
        if entropy_coder is None:
            raise BitstreamError(f"entropy-coded with model '{meta.entropy_model}' (weights "
                                 f"{meta.entropy_weights}), which the decoding model does not have: decode it "
                                 f"with a folder of model '{meta.model}' that holds that entropy model "
                                 f"(entropy_config.json and entropy.safetensors beside config.json)")
        if entropy_coder.name != meta.entropy_model or entropy_coder.weights[:8] != meta.entropy_weights:
            raise BitstreamError(f"entropy-coded with model '{meta.entropy_model}' (weights {meta.entropy_weights}), "
                                 f"but the available one is '{entropy_coder.name}' ({entropy_coder.weights[:8]}): "
                                 f"decode it with the folder of model '{meta.model}' that holds that entropy model "
                                 f"(--model FOLDER, or that folder in CODEC_MODELS_DIR)")
    # every chunk's length and CRC first: damage near the end shows before minutes of entropy decoding,
    # and a damaged frame count before the array it sizes is allocated
    chunks = list(_verified_chunks(data, meta, offset))
    # [F, C, K], filled chunk by chunk: a list of chunks and their concatenation held an hour's codes twice
    frames = _codes_array(meta)
    start = 0
    for index, chunk_frames, body, codes_crc in chunks:
        count = chunk_frames * meta.channels * meta.codebooks
        if meta.entropy_coded:
            try:
                chunk = entropy_coder.decode_chunk(body[4:], meta.channels, meta.codebooks, chunk_frames)
            except (ValueError, RuntimeError, AssertionError) as error:
                raise BitstreamError(f"chunk {index} cannot be entropy-decoded ({error})") from None
            chunk = chunk.transpose(2, 0, 1)
            if zlib.crc32(pack_codes(chunk.reshape(-1), meta.bits_per_code)) != _UINT32.unpack_from(data, codes_crc)[0]:
                raise BitstreamError(
                    f"decoded codes of chunk {index} fail their CRC: the file is corrupted at bytes "
                    f"{codes_crc}-{codes_crc + 3} (that CRC), or the entropy model computed different "
                    f"probabilities than when encoding (other weights or another machine's arithmetic); "
                    f"decode where it was encoded, or re-encode with --no-entropy")
        else:
            chunk = unpack_codes(body, count, meta.bits_per_code).reshape(-1, meta.channels, meta.codebooks)
        frames[start:start + chunk_frames] = chunk
        start += chunk_frames
    codes = frames.transpose(1, 2, 0)
    if codes.size and codes.max() >= meta.codebook_size:
        raise BitstreamError(f"code value {codes.max()} is outside the codebook of {meta.codebook_size}")
    if global_codes is not None and global_codes.size and global_codes.max() >= meta.global_codebook_size:
        raise BitstreamError(f"global code value {global_codes.max()} is outside its codebook of "
                             f"{meta.global_codebook_size}")
    return CodesFile(meta, codes, global_codes)
