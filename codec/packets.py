"""The streaming packet format: a stream header, then self-delimiting packets of code frames.

A stream (``codec stream --save FILE``, or sent over a network) is

    stream header   magic b"CODS", uint8 version (1), uint16 JSON length M, M bytes of JSON
                    (``model``, ``weights``, ``sample_rate``, ``channels``, ``frame_rate``,
                    ``codebook_size``), uint32 CRC-32 of everything before it
    packets         one after another, each
                      1   sync byte 0xC5
                      2   uint16 sequence number (0, 1, 2, ..., wrapping at 65536)
                      1   uint8: codebooks used K in bits 0-6; bit 7 set = entropy-coded payload
                      1   uint8 frames F (0 marks the end of the stream)
                      P   payload: F x C x K codes, ``ceil(log2(codebook_size))`` bits each, frame
                          by frame, then channel, then codebook, MSB first, zero-padded to a byte;
                          in the end packet instead: uint64 total samples at ``sample_rate``;
                          entropy-coded: uint16 length L, L bytes of the F frames range-coded with
                          the entropy model from a fresh context (every packet decodes on its
                          own), then uint16 CRC-16 of the codes bit-packed as above (a packet
                          whose range coding passes 65535 bytes is sent bit-packed, flag clear);
                          in a global-code packet (K = 0, F = G >= 1): the C x G time-invariant
                          codes, channel by channel, ``ceil(log2(global_codebook_size))`` bits
                          each, MSB first, zero-padded to a byte
                      2   CRC-16 (CCITT, ``binascii.crc_hqx``) of the packet's bytes before it

All integers are little-endian. The 7 header bytes cost 2.8 kbps at one 20 ms frame per packet.
A receiver conceals a missing sequence number or a packet whose CRC fails
(``StreamingDecoder.conceal``) and resynchronises on the next valid packet. An entropy-coded
stream names its entropy model in the header (``entropy_model``, ``entropy_weights``); a packet
whose decoded codes fail their CRC (a receiver whose model computes other probabilities) is
concealed like a lost one, never played wrong.

A model with a time-invariant global code (TiCodec) names ``global_codebook_size`` in the header;
its global code goes in a global-code packet before the first frame packet, and again whenever the
sender refreshes it: frames after that packet are decoded with the new code. A receiver that has
no global code yet (its packet was lost) conceals frames until the next one arrives.
"""

import binascii
import json
import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

from codec.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from codec.bitstream import (
    MAGIC,
    MAX_CHANNELS,
    MAX_WEIGHTS_CHARS,
    BitstreamError,
    pack_codes,
    parses_as_codes_file,
    shown_value,
    unpack_codes,
)

STREAM_MAGIC = b"CODS"
PACKET_SYNC = b"\xc5"
VERSION = 1
_STREAM_HEAD = struct.Struct("<4sBH")
_PACKET_HEAD = struct.Struct("<cHBB")
_CRC = struct.Struct("<I")
_PACKET_CRC = struct.Struct("<H")
_TOTAL = struct.Struct("<Q")
_LENGTH = struct.Struct("<H")
ENTROPY_FLAG = 0x80
MAX_PACKET_CODEBOOKS = 127    # codebooks in one packet (7 bits of its header)
MAX_PACKET_GLOBAL_CODES = 255  # global codes in a global-code packet (its frames byte)
MAX_CODED_LENGTH = 0xFFFF   # bytes of one packet's range-coded payload (its uint16 length)
# A range-coded code costs at most 24 bits (constriction's probabilities are 24-bit fixed point),
# and its word rounding and flush under 16 bytes: a longer entropy-coded payload is damage
MAX_CODED_BYTES_PER_CODE = 3
RANGE_CODER_FLUSH_BYTES = 16
SEQUENCE_MODULO = 1 << 16
CODES_FILE_WITH_STREAM_MAGIC = ("corrupt header: the magic bytes at offset 0 read CODS (a packet stream's), but "
                                "the file's CRC shows a .codes file (CODC): the file is corrupted")


def coded_kind(start: bytes) -> str | None:
    """What a file beginning with ``start`` holds if it is codes, not audio: "a .codes file" or
    "a packet stream (codec stream --save)"; None otherwise."""
    return {MAGIC: "a .codes file", STREAM_MAGIC: "a packet stream (codec stream --save)"}.get(start[:4])


@dataclass
class StreamInfo:
    model: str
    weights: str
    sample_rate: int
    channels: int
    frame_rate: float
    codebook_size: int
    entropy_model: str | None = None      # entropy-coded packets: the model's name
    entropy_weights: str | None = None    # and the first 8 hex digits of its weights' SHA-256
    global_codebook_size: int | None = None   # models with a time-invariant global code

    @property
    def bits_per_code(self) -> int:
        return max(1, math.ceil(math.log2(self.codebook_size)))

    @property
    def bits_per_global_code(self) -> int:
        return max(1, math.ceil(math.log2(self.global_codebook_size or 2)))


@dataclass
class Packet:
    sequence: int
    codes: np.ndarray | None      # [C, K, F]; None for the end packet and a global-code packet
    total_samples: int | None = None          # the end packet
    global_codes: np.ndarray | None = None    # [C, G], a global-code packet

    @property
    def is_end(self) -> bool:
        return self.total_samples is not None


def stream_header(info: StreamInfo) -> bytes:
    raw = json.dumps({k: v for k, v in asdict(info).items() if v is not None}, separators=(",", ":")).encode()
    head = _STREAM_HEAD.pack(STREAM_MAGIC, VERSION, len(raw)) + raw
    return head + _CRC.pack(zlib.crc32(head))


def _checked_codes(codes, shape: str, channels: int, size: int, what: str = "codes") -> np.ndarray:
    """``codes`` (numpy or torch) as an int64 array of ``shape`` (``"[C, K, F]"`` or ``"[C, G]"``)
    with ``channels`` channels and every code in ``[0, size)``: a code out of range would be sent
    as another, valid one (its bits cut to the code width), and the CRC would not tell.

    Raises:
        ValueError: naming what is wrong.
    """
    array = np.asarray(codes.detach().cpu() if hasattr(codes, "detach") else codes)
    dims = shape.count(",") + 1
    if array.ndim != dims or array.shape[0] != channels:
        raise ValueError(f"{what} of shape {array.shape}: a packet of this stream holds {shape} with C = "
                         f"{channels} channels (its header's)")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what} are {array.dtype}: give integer code indices")
    if array.size and (array.min() < 0 or array.max() >= size):
        raise ValueError(f"{what} range from {array.min()} to {array.max()}; this stream's codebooks hold 0 to "
                         f"{size - 1}")
    return array.astype(np.int64)


def packet_bytes(sequence: int, codes: np.ndarray, info: StreamInfo, entropy_coder=None) -> bytes:
    """One packet of ``codes [C, K, F]`` (numpy or torch; 1 <= F <= 255, K <= 127, C the stream's
    channels, each code in ``[0, info.codebook_size)``), range-coded with ``entropy_coder`` (a
    ``codec.entropy.EntropyCoder``) when given, unless that takes more than ``MAX_CODED_LENGTH``
    bytes (many channels and frames): then bit-packed, as without one.

    Raises:
        ValueError: for codes of another shape, type or range, or too many frames or codebooks.
    """
    codes = _checked_codes(codes, "[C, K, F]", info.channels, info.codebook_size)
    channels, codebooks, frames = codes.shape
    if not 1 <= frames <= 255 or not 1 <= codebooks <= MAX_PACKET_CODEBOOKS:
        raise ValueError(f"a packet holds 1 to 255 frames of 1 to {MAX_PACKET_CODEBOOKS} codebooks, not {frames} of "
                         f"{codebooks}")
    packed = pack_codes(codes.transpose(2, 0, 1).reshape(-1), info.bits_per_code)
    coded = None if entropy_coder is None else entropy_coder.encode_chunk(np.ascontiguousarray(codes, dtype=np.int64))
    if coded is None or len(coded) > MAX_CODED_LENGTH:   # (its uint16 length cannot say more; plain needs none)
        payload, flag = packed, 0
    else:
        payload = _LENGTH.pack(len(coded)) + coded + _PACKET_CRC.pack(binascii.crc_hqx(packed, 0))
        flag = ENTROPY_FLAG
    head = _PACKET_HEAD.pack(PACKET_SYNC, sequence % SEQUENCE_MODULO, codebooks | flag, frames) + payload
    return head + _PACKET_CRC.pack(binascii.crc_hqx(head, 0))


def global_packet(sequence: int, global_codes: np.ndarray, info: StreamInfo) -> bytes:
    """A global-code packet of ``global_codes [C, G]`` (1 <= G <= 255) for a TiCodec model.

    Raises:
        ValueError: for a stream without global codes, or codes of another shape, type or range.
    """
    if info.global_codebook_size is None:
        raise ValueError("a global-code packet needs a stream with global codes (a TiCodec model's)")
    global_codes = _checked_codes(global_codes, "[C, G]", info.channels, info.global_codebook_size, "global codes")
    channels, groups = global_codes.shape
    if not 1 <= groups <= MAX_PACKET_GLOBAL_CODES:
        raise ValueError(f"a global-code packet holds 1 to {MAX_PACKET_GLOBAL_CODES} global codes, not {groups}")
    payload = pack_codes(global_codes.reshape(-1), info.bits_per_global_code)
    head = _PACKET_HEAD.pack(PACKET_SYNC, sequence % SEQUENCE_MODULO, 0, groups) + payload
    return head + _PACKET_CRC.pack(binascii.crc_hqx(head, 0))


def end_packet(sequence: int, total_samples: int) -> bytes:
    """The end-of-stream packet: F = 0 and the stream's exact length in samples."""
    head = _PACKET_HEAD.pack(PACKET_SYNC, sequence % SEQUENCE_MODULO, 0, 0) + _TOTAL.pack(total_samples)
    return head + _PACKET_CRC.pack(binascii.crc_hqx(head, 0))


def sequence_gap(sequence: int, expected: int) -> int:
    """Packets missing between the expected sequence number and the one received (wrapping)."""
    return (sequence - expected) % SEQUENCE_MODULO


def read_stream_header(data: bytes) -> tuple[StreamInfo, int]:
    """Parse a stream header; returns it and the offset of the first packet.

    Raises:
        BitstreamError: wrong magic, unknown version, truncation, a CRC mismatch or a field with a
            value no stream can have (named); a ``.codes`` file whose magic bytes were damaged into
            a stream's is named as such.
    """
    if data[:4] != STREAM_MAGIC:
        raise BitstreamError("not a packet stream (wrong magic bytes at offset 0)")
    try:
        return parse_stream_header(data)
    except BitstreamError:
        if parses_as_codes_file(data):   # (the two magics differ by one bit)
            raise BitstreamError(CODES_FILE_WITH_STREAM_MAGIC) from None
        raise


def parse_stream_header(data: bytes) -> tuple[StreamInfo, int]:
    """``read_stream_header`` without its check of the magic bytes."""
    if len(data) < _STREAM_HEAD.size:
        raise BitstreamError(f"truncated in the stream header ({len(data)} bytes)")
    _, version, length = _STREAM_HEAD.unpack_from(data)
    if version != VERSION:
        raise BitstreamError(f"unsupported packet stream version {version} at offset 4; this codec reads {VERSION}")
    end = _STREAM_HEAD.size + length
    if len(data) < end + _CRC.size:
        raise BitstreamError("truncated in the stream header")
    if zlib.crc32(data[:end]) != _CRC.unpack_from(data, end)[0]:
        raise BitstreamError(f"CRC mismatch in the stream header (bytes 0-{end - 1})")
    try:
        info = StreamInfo(**json.loads(data[_STREAM_HEAD.size:end]))
    except (ValueError, TypeError, RecursionError):
        raise BitstreamError("corrupt stream header metadata") from None
    field = _invalid_stream_field(info)
    if field is not None:
        raise BitstreamError(f"corrupt stream header metadata (invalid value of {field}: "
                             f"{shown_value(repr(getattr(info, field)))})")
    return info, end + _CRC.size


def _invalid_stream_field(info: StreamInfo) -> str | None:
    """The first header field whose value no stream can have (the .codes format's limits: a
    crafted header must not ask for a terabyte of output); None if there is none."""
    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    checks = [
        ("channels", lambda: whole(info.channels) and 1 <= info.channels <= MAX_CHANNELS),
        ("sample_rate", lambda: whole(info.sample_rate) and MIN_SAMPLE_RATE <= info.sample_rate <= MAX_SAMPLE_RATE),
        ("frame_rate", lambda: isinstance(info.frame_rate, (int, float)) and not isinstance(info.frame_rate, bool)
         and math.isfinite(info.frame_rate) and 0 < info.frame_rate <= info.sample_rate),
        ("codebook_size", lambda: whole(info.codebook_size) and 2 <= info.codebook_size <= 1 << 16),
        ("model", lambda: isinstance(info.model, str)),
        ("weights", lambda: isinstance(info.weights, str) and len(info.weights) <= MAX_WEIGHTS_CHARS),
        ("entropy_model", lambda: info.entropy_model is None or isinstance(info.entropy_model, str)),
        ("entropy_weights", lambda: info.entropy_weights is None
         or (isinstance(info.entropy_weights, str) and len(info.entropy_weights) <= MAX_WEIGHTS_CHARS)),
        ("global_codebook_size", lambda: info.global_codebook_size is None
         or (whole(info.global_codebook_size) and 2 <= info.global_codebook_size <= 1 << 16)),
    ]
    return next((name for name, valid in checks if not valid()), None)


def read_packets(data: bytes, offset: int, info: StreamInfo, entropy_coder=None) -> Iterator[Packet]:
    """Every valid packet from ``offset`` on; damaged bytes are skipped up to the next valid packet.
    Entropy-coded packets need ``entropy_coder``; one whose codes fail their CRC is left out."""
    while offset + _PACKET_HEAD.size + _PACKET_CRC.size <= len(data):
        packet, size = _parse_packet(data, offset, info, entropy_coder)
        if packet is None and size:   # intact, but its codes cannot be recovered: skip it whole
            offset += size
            continue
        if packet is None:
            offset = data.find(PACKET_SYNC, offset + 1)  # resynchronise
            if offset < 0:
                return
            continue
        yield packet
        offset += size


@dataclass
class _Framed:
    """A packet whose CRC passed, before its payload is read."""
    sequence: int
    codebooks: int      # K (0 for the end packet and a global-code packet)
    frames: int         # F (G for a global-code packet, 0 for the end packet)
    coded: bool         # an entropy-coded payload
    is_global: bool
    payload: bytes
    size: int           # bytes, header to CRC


def _framed(data: bytes, offset: int, info: StreamInfo) -> _Framed | None:
    """The packet at ``offset`` if its sync byte, length and CRC-16 are intact, else None."""
    sync, sequence, codebooks, frames = _PACKET_HEAD.unpack_from(data, offset)
    if sync != PACKET_SYNC:
        return None
    coded, codebooks = bool(codebooks & ENTROPY_FLAG) and frames > 0, codebooks & ~ENTROPY_FLAG
    is_global = codebooks == 0 and frames > 0
    if is_global and (coded or info.global_codebook_size is None):
        return None
    start = offset + _PACKET_HEAD.size
    if is_global:
        payload_length = math.ceil(frames * info.channels * info.bits_per_global_code / 8)
    elif coded:
        if info.entropy_model is None or start + _LENGTH.size > len(data):
            return None
        (length,) = _LENGTH.unpack_from(data, start)
        if length > MAX_CODED_BYTES_PER_CODE * frames * info.channels * codebooks + RANGE_CODER_FLUSH_BYTES:
            return None   # (checked before the CRC: a run of sync bytes must not cost a CRC of 50 kB each)
        payload_length = _LENGTH.size + length + _PACKET_CRC.size
    else:
        payload_length = _TOTAL.size if frames == 0 else math.ceil(frames * info.channels * codebooks
                                                                   * info.bits_per_code / 8)
    end = start + payload_length
    if end + _PACKET_CRC.size > len(data):
        return None
    if binascii.crc_hqx(data[offset:end], 0) != _PACKET_CRC.unpack_from(data, end)[0]:
        return None
    return _Framed(sequence, codebooks, frames, coded, is_global, data[start:end], end + _PACKET_CRC.size - offset)


def _parse_packet(data: bytes, offset: int, info: StreamInfo, entropy_coder=None) -> tuple[Packet | None, int]:
    framed = _framed(data, offset, info)
    if framed is None:
        return None, 0
    sequence, codebooks, frames, payload, size = (framed.sequence, framed.codebooks, framed.frames,
                                                  framed.payload, framed.size)
    if frames == 0:
        return Packet(sequence, None, _TOTAL.unpack(payload)[0]), size
    if framed.is_global:
        codes = unpack_codes(payload, frames * info.channels, info.bits_per_global_code)
        if codes.max() >= info.global_codebook_size:
            return None, 0
        return Packet(sequence, None, global_codes=codes.reshape(info.channels, frames)), size
    if framed.coded:
        if entropy_coder is None:
            return None, 0
        try:
            codes = entropy_coder.decode_chunk(payload[_LENGTH.size:-_PACKET_CRC.size], info.channels, codebooks,
                                               frames)
        except (ValueError, RuntimeError, AssertionError):
            return None, size
        packed = pack_codes(codes.transpose(2, 0, 1).reshape(-1), info.bits_per_code)
        if binascii.crc_hqx(packed, 0) != _PACKET_CRC.unpack_from(payload, len(payload) - _PACKET_CRC.size)[0]:
            return None, size   # the receiver's entropy model disagrees: conceal, never play it
        return Packet(sequence, codes), size
    codes = unpack_codes(payload, frames * info.channels * codebooks, info.bits_per_code)
    if codes.max() >= info.codebook_size:
        return None, 0
    codes = codes.reshape(frames, info.channels, codebooks).transpose(1, 2, 0)
    return Packet(sequence, codes), size


@dataclass
class StreamSummary:
    """What ``codec info`` reports of a saved packet stream, read from the packets' headers and
    CRCs without decoding their codes (so without the entropy model)."""
    packets: int = 0               # intact frame packets
    frames: int = 0                # code frames in them
    max_frames: int = 0            # in the largest of them: the sender's packet size
    codebooks: tuple[int, ...] = ()     # the codebook counts used (one, unless the bitrate changed)
    lost_packets: int = 0          # sequence numbers missing before and between intact packets
    lost_at_start: int = 0         # of them, those before the first intact packet
    stale_packets: int = 0         # duplicated or out-of-order packets (decoding drops them)
    damaged_bytes: int = 0         # bytes skipped to resynchronise
    global_packets: int = 0
    entropy_coded: bool = False
    total_samples: int | None = None   # from the end packet; None if the stream has none
    bytes_after_end: int = 0       # bytes after the end packet (another stream appended?), not read


def summarize_stream(data: bytes, offset: int, info: StreamInfo) -> StreamSummary:
    """Walk the packets from ``offset`` as ``read_packets`` does, counting instead of decoding."""
    summary, used, expected = StreamSummary(), set(), 0
    while offset + _PACKET_HEAD.size + _PACKET_CRC.size <= len(data):
        framed = _framed(data, offset, info)
        if framed is None:
            found = data.find(PACKET_SYNC, offset + 1)
            found = len(data) if found < 0 else found
            summary.damaged_bytes += found - offset
            offset = found
            continue
        gap = sequence_gap(framed.sequence, expected)
        if gap >= SEQUENCE_MODULO // 2:   # a duplicate or a late arrival, which decoding drops
            summary.stale_packets += 1
            offset += framed.size
            continue
        summary.lost_packets += gap
        if not (summary.packets or summary.global_packets):
            summary.lost_at_start = gap
        expected = (framed.sequence + 1) % SEQUENCE_MODULO
        if framed.frames == 0:   # the end: what follows is not this stream's
            summary.total_samples = _TOTAL.unpack(framed.payload)[0]
            summary.bytes_after_end = len(data) - offset - framed.size
            break
        if framed.is_global:
            summary.global_packets += 1
        else:
            summary.packets += 1
            summary.frames += framed.frames
            summary.max_frames = max(summary.max_frames, framed.frames)
            summary.entropy_coded |= framed.coded
            used.add(framed.codebooks)
        offset += framed.size
    else:
        summary.damaged_bytes += max(0, len(data) - offset)
    summary.codebooks = tuple(sorted(used))
    return summary
