"""The streaming packet format: a stream header, then self-delimiting packets of code frames.

A stream (``codec stream --save FILE``, or sent over a network) is

    stream header   magic b"CODS", uint8 version (1), uint16 JSON length M, M bytes of JSON
                    (``model``, ``weights``, ``sample_rate``, ``channels``, ``frame_rate``,
                    ``codebook_size``), uint32 CRC-32 of everything before it
    packets         one after another, each
                      1   sync byte 0xC5
                      2   uint16 sequence number (0, 1, 2, ..., wrapping at 65536)
                      1   uint8 codebooks used K
                      1   uint8 frames F (0 marks the end of the stream)
                      P   payload: F x C x K codes, ``ceil(log2(codebook_size))`` bits each, frame
                          by frame, then channel, then codebook, MSB first, zero-padded to a byte;
                          in the end packet instead: uint64 total samples at ``sample_rate``
                      2   CRC-16 (CCITT, ``binascii.crc_hqx``) of the packet's bytes before it

All integers are little-endian. The 7 header bytes cost 2.8 kbps at one 20 ms frame per packet.
A receiver conceals a missing sequence number or a packet whose CRC fails
(``StreamingDecoder.conceal``) and resynchronises on the next valid packet.
"""

import binascii
import json
import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

from codec.bitstream import BitstreamError, pack_codes, unpack_codes

STREAM_MAGIC = b"CODS"
PACKET_SYNC = b"\xc5"
VERSION = 1
_STREAM_HEAD = struct.Struct("<4sBH")
_PACKET_HEAD = struct.Struct("<cHBB")
_CRC = struct.Struct("<I")
_PACKET_CRC = struct.Struct("<H")
_TOTAL = struct.Struct("<Q")
SEQUENCE_MODULO = 1 << 16


@dataclass
class StreamInfo:
    model: str
    weights: str
    sample_rate: int
    channels: int
    frame_rate: float
    codebook_size: int

    @property
    def bits_per_code(self) -> int:
        return max(1, math.ceil(math.log2(self.codebook_size)))


@dataclass
class Packet:
    sequence: int
    codes: np.ndarray | None      # [C, K, F]; None for the end packet
    total_samples: int | None = None


def stream_header(info: StreamInfo) -> bytes:
    raw = json.dumps(asdict(info), separators=(",", ":")).encode()
    head = _STREAM_HEAD.pack(STREAM_MAGIC, VERSION, len(raw)) + raw
    return head + _CRC.pack(zlib.crc32(head))


def packet_bytes(sequence: int, codes: np.ndarray, info: StreamInfo) -> bytes:
    """One packet of ``codes [C, K, F]`` (1 <= F <= 255)."""
    channels, codebooks, frames = codes.shape
    if not 1 <= frames <= 255:
        raise ValueError(f"a packet holds 1 to 255 frames, not {frames}")
    payload = pack_codes(np.asarray(codes).transpose(2, 0, 1).reshape(-1), info.bits_per_code)
    head = _PACKET_HEAD.pack(PACKET_SYNC, sequence % SEQUENCE_MODULO, codebooks, frames) + payload
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
        BitstreamError: wrong magic, unknown version, truncation or a CRC mismatch.
    """
    if len(data) < _STREAM_HEAD.size or data[:4] != STREAM_MAGIC:
        raise BitstreamError("not a packet stream (wrong magic bytes at offset 0)")
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
    except (ValueError, TypeError):
        raise BitstreamError("corrupt stream header metadata") from None
    if not (info.channels >= 1 and info.sample_rate >= 1 and 2 <= info.codebook_size <= 1 << 16):
        raise BitstreamError("corrupt stream header metadata (invalid values)")
    return info, end + _CRC.size


def read_packets(data: bytes, offset: int, info: StreamInfo) -> Iterator[Packet]:
    """Every valid packet from ``offset`` on; damaged bytes are skipped up to the next valid packet."""
    while offset + _PACKET_HEAD.size + _PACKET_CRC.size <= len(data):
        packet, size = _parse_packet(data, offset, info)
        if packet is None:
            offset = data.find(PACKET_SYNC, offset + 1)  # resynchronise
            if offset < 0:
                return
            continue
        yield packet
        offset += size


def _parse_packet(data: bytes, offset: int, info: StreamInfo) -> tuple[Packet | None, int]:
    sync, sequence, codebooks, frames = _PACKET_HEAD.unpack_from(data, offset)
    if sync != PACKET_SYNC:
        return None, 0
    payload_length = _TOTAL.size if frames == 0 else math.ceil(frames * info.channels * codebooks
                                                               * info.bits_per_code / 8)
    end = offset + _PACKET_HEAD.size + payload_length
    if end + _PACKET_CRC.size > len(data):
        return None, 0
    if binascii.crc_hqx(data[offset:end], 0) != _PACKET_CRC.unpack_from(data, end)[0]:
        return None, 0
    payload = data[offset + _PACKET_HEAD.size:end]
    if frames == 0:
        return Packet(sequence, None, _TOTAL.unpack(payload)[0]), end + _PACKET_CRC.size - offset
    if codebooks == 0:
        return None, 0
    codes = unpack_codes(payload, frames * info.channels * codebooks, info.bits_per_code)
    if codes.max() >= info.codebook_size:
        return None, 0
    codes = codes.reshape(frames, info.channels, codebooks).transpose(1, 2, 0)
    return Packet(sequence, codes), end + _PACKET_CRC.size - offset
