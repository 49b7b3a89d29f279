"""Fuzzing of the .codes reader: mutated valid files must raise only BitstreamError, quickly.

Seed files are plain and entropy-coded (with a small random entropy model).
Mutations: bit flips, truncations, insertions, deletions, and overwrites of header fields and
metadata values. The CI runs a short version (tests/test_bitstream_fuzz.py); the full run is

    .venv/bin/python -m tests.bitstream_fuzz 10000
"""

import json
import struct
import sys
import time
import zlib

import numpy as np
import torch

from codec.bitstream import BitstreamError, CodesFile, CodesMetadata, from_bytes, to_bytes
from codec.entropy import EntropyCoder, EntropyModel, EntropyModelConfig


def entropy_coder() -> EntropyCoder:
    """A small random entropy model: entropy-coded seed files exercise the range decoder too."""
    torch.manual_seed(0)
    config = EntropyModelConfig(name="entropy-fuzz", dim=16, layers=1, heads=2, context_frames=8, depth_hidden=16)
    return EntropyCoder(EntropyModel(config))


def seed_files(rng: np.random.Generator, coder: EntropyCoder) -> list[bytes]:
    files = []
    for channels, codebooks, frames in [(1, 12, 250), (2, 3, 7), (1, 24, 1501), (3, 6, 0), (1, 1, 1)]:
        meta = CodesMetadata("conv-16k", "0123abcd", 16000, channels, frames * 320, 50, codebooks, 1024, frames)
        files.append(to_bytes(CodesFile(meta, rng.integers(0, 1024, (channels, codebooks, frames)))))
    for channels, codebooks, frames in [(1, 6, 60), (2, 3, 20)]:
        meta = CodesMetadata("conv-16k", "0123abcd", 16000, channels, frames * 320, 50, codebooks, 1024, frames)
        files.append(to_bytes(CodesFile(meta, rng.integers(0, 1024, (channels, codebooks, frames))), coder))
    return files


_ODD_VALUES = [0, -1, 1, 2 ** 31, 2 ** 63, 1e308, "x", None, [], {}, True, 0.5, float("nan"), 99999999999]


def _metadata_overwrite(data: bytes, rng: np.random.Generator) -> bytes:
    """Change one metadata value and re-sign the first chunk, so the reader's checks of the
    values themselves are reached (not only the CRC)."""
    length = struct.unpack_from("<H", data, 6)[0]
    values = json.loads(data[8:8 + length])
    meta = CodesMetadata(**values)
    first_chunk = min(meta.frames, 1500) * meta.channels * meta.codebooks * meta.bits_per_code
    payload = data[8 + length:8 + length + -(-first_chunk // 8)]
    rest = data[8 + length + len(payload) + 4:]
    values[sorted(values)[rng.integers(len(values))]] = _ODD_VALUES[rng.integers(len(_ODD_VALUES))]
    raw = json.dumps(values).encode()[:65535]
    head = data[:6] + struct.pack("<H", len(raw)) + raw + payload
    return head + struct.pack("<I", zlib.crc32(head)) + rest


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    kind = rng.integers(7)
    buffer = bytearray(data)
    if kind == 0:                                   # flip 1-8 random bits
        for _ in range(rng.integers(1, 9)):
            position = rng.integers(len(buffer))
            buffer[position] ^= 1 << rng.integers(8)
    elif kind == 1:                                 # truncate
        buffer = buffer[:rng.integers(len(buffer))]
    elif kind == 2:                                 # insert random bytes
        position = rng.integers(len(buffer) + 1)
        buffer[position:position] = rng.bytes(int(rng.integers(1, 64)))
    elif kind == 3:                                 # delete a span
        position = rng.integers(len(buffer))
        del buffer[position:position + int(rng.integers(1, 64))]
    elif kind == 4:                                 # overwrite a header field
        field = rng.choice([(4, "B"), (5, "B"), (6, "<H")])
        struct.pack_into(field[1], buffer, int(field[0]), int(rng.integers(0, 256 if field[1] == "B" else 65536)))
    elif kind == 5:                                 # overwrite a metadata value (CRC then fails too)
        return _metadata_overwrite(data, rng)
    else:                                           # random junk after the magic
        buffer = buffer[:4] + bytearray(rng.bytes(int(rng.integers(0, 300))))
    return bytes(buffer)


def run(cases: int, seed: int = 0) -> dict:
    """Returns counts: cases, refused, accepted (mutation left a valid file), other exceptions."""
    rng = np.random.default_rng(seed)
    coder = entropy_coder()
    files = seed_files(rng, coder)
    counts = {"cases": 0, "refused": 0, "accepted": 0, "other_exceptions": [], "slowest_s": 0.0}
    for _ in range(cases):
        data = mutate(files[rng.integers(len(files))], rng)
        start = time.perf_counter()
        try:
            from_bytes(data, coder)
            counts["accepted"] += 1
        except BitstreamError:
            counts["refused"] += 1
        except Exception as error:  # noqa: BLE001 - the point is to catch anything else
            counts["other_exceptions"].append(f"{type(error).__name__}: {error}")
        counts["slowest_s"] = max(counts["slowest_s"], time.perf_counter() - start)
        counts["cases"] += 1
    return counts


if __name__ == "__main__":
    result = run(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
    result["other_exceptions"] = len(result["other_exceptions"])
    print(json.dumps(result, indent=2))
