"""The .codes container: round trips over random sizes, and every corruption is refused."""

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from codec.bitstream import FRAMES_PER_CHUNK, BitstreamError, CodesFile, CodesMetadata, from_bytes, to_bytes


def make(channels=1, codebooks=12, frames=50, codebook_size=1024, seed=0) -> CodesFile:
    rng = np.random.default_rng(seed)
    meta = CodesMetadata(model="conv-16k", weights="0123abcd", sample_rate=16000, channels=channels,
                         samples=frames * 320, frame_rate=50, codebooks=codebooks,
                         codebook_size=codebook_size, frames=frames)
    return CodesFile(meta, rng.integers(0, codebook_size, (channels, codebooks, frames)))


@pytest.mark.parametrize("seed", range(12))
def test_round_trip_random_sizes(seed):
    rng = np.random.default_rng(seed)
    original = make(channels=int(rng.integers(1, 4)), codebooks=int(rng.integers(1, 25)),
                    frames=int(rng.integers(0, 2 * FRAMES_PER_CHUNK + 7)),
                    codebook_size=int(rng.choice([2, 3, 256, 1000, 1024, 4096])), seed=seed)
    restored = from_bytes(to_bytes(original))
    assert restored.metadata == original.metadata
    np.testing.assert_array_equal(restored.codes, original.codes)


def test_payload_is_bit_packed_at_10_bits():
    codes_file = make(codebooks=12, frames=250)  # 5 s at 6 kbps = 3750 bytes of payload
    data = to_bytes(codes_file)
    metadata_length = struct.unpack_from("<H", data, 6)[0]
    assert len(data) == 8 + metadata_length + 3750 + 4
    assert len(data) <= 6000 * 5 / 8 + 200


def test_wrong_magic():
    data = bytearray(to_bytes(make()))
    data[:4] = b"XCDC"
    with pytest.raises(BitstreamError, match="wrong magic"):
        from_bytes(bytes(data))
    for start in (b"RIFF", b"ID3\x04", b"\xff\xfb\x90\x00"):   # WAV, MP3 with a tag, an MPEG-1 layer III frame
        data[:4] = start
        with pytest.raises(BitstreamError, match="not a .codes file: it begins as an audio file"):
            from_bytes(bytes(data))
    for start in (b"\xff\xff\xff\xff", b"\xff\xe0\x00\x00"):   # a reserved bitrate / version: not MP3
        with pytest.raises(BitstreamError, match=r"^not a .codes file \(wrong magic bytes at offset 0\)$"):
            from_bytes(start + bytes(data[4:]))


def test_a_model_or_checkpoint_file_given_as_codes_is_named_for_what_it_is(tmp_path, tiny_model_dir):
    import torch

    torch.save({"step": 1}, tmp_path / "checkpoint.pt")
    files = {tmp_path / "checkpoint.pt": r"a zip archive \(as a PyTorch training checkpoint, .pt, or a NumPy .npz is\)",
             tiny_model_dir / "model.safetensors": "a safetensors file",
             tiny_model_dir / "config.json": "a model's config.json"}
    for path, kind in files.items():
        with pytest.raises(BitstreamError, match=rf"^not a .codes file: it is {kind}.*; a model is given by its "
                                                 rf"folder"):
            from_bytes(path.read_bytes())
    with pytest.raises(BitstreamError, match=r"^not a .codes file: it is JSON text$"):   # a log, not a model's
        from_bytes(b'{"step": 1, "loss": 0.5}\n')
    with pytest.raises(BitstreamError, match=r"wrong magic"):
        from_bytes(b"PQ\x03\x04" + bytes(64))
    with pytest.raises(BitstreamError, match=r"^not a .codes file \(wrong magic"):   # short, but not a codes start
        from_bytes(b"hello\n")
    with pytest.raises(BitstreamError, match=r"^truncated: 5 bytes is shorter than the 8-byte header"):
        from_bytes(to_bytes(make())[:5])
    with pytest.raises(BitstreamError, match=r"^is empty \(0 bytes\), not a .codes file"):
        from_bytes(b"")


def test_unknown_version():
    data = bytearray(to_bytes(make()))
    data[4] = 9    # otherwise a valid version 2 file: its CRC shows the byte was damaged
    with pytest.raises(BitstreamError, match="version byte at offset 4 reads 9, but the file's CRC shows a version 2"):
        from_bytes(bytes(data))
    data[-1] ^= 1  # a file that does not pass as a readable version: perhaps a newer format
    with pytest.raises(BitstreamError, match="unsupported .codes format version 9 at offset 4; this codec reads "
                                             "versions 1 to 2 \\(written by a newer codec"):
        from_bytes(bytes(data))


def test_every_truncation_is_refused():
    data = to_bytes(make(frames=20))
    for length in range(len(data)):
        with pytest.raises(BitstreamError):
            from_bytes(data[:length])


def test_crc_mismatch():
    data = bytearray(to_bytes(make()))
    data[-10] ^= 0x01
    with pytest.raises(BitstreamError, match="CRC mismatch"):
        from_bytes(bytes(data))


def test_trailing_bytes():
    with pytest.raises(BitstreamError, match="^1 unexpected byte after the last chunk"):
        from_bytes(to_bytes(make()) + b"\0")


def test_corrupt_metadata():
    data = to_bytes(make())
    metadata_length = struct.unpack_from("<H", data, 6)[0]
    bad = json.dumps({"model": 1}).encode()
    forged = data[:6] + struct.pack("<H", len(bad)) + bad + data[8 + metadata_length:]
    with pytest.raises(BitstreamError, match="metadata"):
        from_bytes(forged)


@pytest.mark.parametrize("changes", [
    {"samples": 10 ** 11},                  # would allocate hundreds of GiB
    {"samples": 10 ** 400},                 # beyond a float
    {"frames": 0, "samples": 54096},        # audio out of no codes
    {"samples": 50 * 320 * 20},             # twenty times the frames' length
    {"samples": 48 * 320 - 1},              # two frames short of the codes
    {"sample_rate": 1, "samples": 1},       # not audio
    {"frame_rate": 1e308},                  # more frames than samples per second (overflowed the check)
])
def test_metadata_whose_samples_disagree_with_its_frames_is_refused(changes, monkeypatch):
    import codec.bitstream

    original = make()
    meta = CodesMetadata(**{**original.metadata.__dict__, **changes})
    forged = CodesFile(meta, original.codes[..., :meta.frames])
    with pytest.raises(ValueError, match="metadata that a .codes file cannot hold"):   # never written ...
        to_bytes(forged)
    monkeypatch.setattr(codec.bitstream, "codes_problem", lambda codes_file: None)
    data = to_bytes(forged)                             # ... and refused when read from a writer that did
    monkeypatch.undo()
    with pytest.raises(BitstreamError, match="corrupt metadata"):
        from_bytes(data)


def test_code_outside_codebook_is_refused():
    codes_file = make(codebook_size=1000, frames=1)
    codes_file.codes[0, 0, 0] = 999
    data = bytearray(to_bytes(codes_file))
    # set the first code to 1023 (all ones), then fix the CRC so only the range check can catch it
    metadata_length = struct.unpack_from("<H", data, 6)[0]
    start = 8 + metadata_length
    payload_length = len(data) - start - 4
    data[start] = 0xFF
    data[start + 1] |= 0xC0
    data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:start + payload_length])))
    with pytest.raises(BitstreamError, match="outside the codebook"):
        from_bytes(bytes(data))


def test_a_forged_frame_count_is_refused_before_its_codes_are_allocated(monkeypatch):
    """A file whose metadata claims 10^9 frames (89 GiB of codes) but holds one valid chunk, its CRC
    signed again: the missing chunk is named, and no array of the claimed size is made first."""
    data = to_bytes(make(frames=FRAMES_PER_CHUNK + 10))
    metadata_length = struct.unpack_from("<H", data, 6)[0]
    meta = json.loads(data[8:8 + metadata_length])
    meta.update(frames=10**9, samples=10**9 * 320)
    metadata = json.dumps(meta).encode()
    head = data[:6] + struct.pack("<H", len(metadata)) + metadata
    chunk = data[8 + metadata_length:8 + metadata_length + FRAMES_PER_CHUNK * 12 * 10 // 8]
    forged = head + chunk + struct.pack("<I", zlib.crc32(head + chunk))
    allocated = []
    real_empty = np.empty
    monkeypatch.setattr(np, "empty", lambda shape, *a, **k: allocated.append(shape) or real_empty(shape, *a, **k))
    with pytest.raises(BitstreamError, match="truncated in chunk 1"):
        from_bytes(forged)
    assert not allocated


def test_a_range_coded_file_claiming_more_codes_than_memory_holds_is_refused_by_name():
    """Range-coded chunks may be 12 bytes for 1500 frames each: 12 kB of valid chunks can claim
    1.5 M frames of 1024 channels (275 GiB of codes). Named, not an internal MemoryError."""
    from types import SimpleNamespace

    from codec.bitstream import _HEADER, FLAG_ENTROPY, MAGIC

    chunks, channels = 1000, 1024
    meta = dict(model="m", weights="0123abcd", sample_rate=16000, channels=channels, samples=chunks * 1500 * 320,
                frame_rate=50, codebooks=24, codebook_size=1024, frames=chunks * 1500, entropy_model="e",
                entropy_weights="89abcdef")
    metadata = json.dumps(meta).encode()
    parts, crc = [_HEADER.pack(MAGIC, 2, FLAG_ENTROPY, len(metadata)), metadata], 0
    for index in range(chunks):
        body = struct.pack("<I", 0)   # a chunk's length field: no bytes of codes
        crc = zlib.crc32(b"".join(parts) + body) if index == 0 else zlib.crc32(body, crc)
        parts += [body, struct.pack("<I", crc), struct.pack("<I", 0)]
    coder = SimpleNamespace(name="e", weights="89abcdef" + "0" * 56)
    with pytest.raises(BitstreamError, match=r"claims 1500000 frames x 1024 channels x 24 codebooks, 274.7 GiB of "
                                             r"codes, more than (this machine's memory|can be allocated)"):
        from_bytes(b"".join(parts), coder)


def test_header_and_metadata_are_covered_by_the_crc():
    data = to_bytes(make())
    metadata_length = struct.unpack_from("<H", data, 6)[0]
    for offset in (6, 9, 8 + metadata_length // 2, 8 + metadata_length - 2):
        corrupted = bytearray(data)
        corrupted[offset] ^= 0x04
        with pytest.raises(BitstreamError):
            from_bytes(bytes(corrupted))


def test_empty_file_has_one_checked_chunk():
    empty = make(frames=0)
    data = to_bytes(empty)
    assert from_bytes(data).codes.shape == (1, 12, 0)
    with pytest.raises(BitstreamError, match="truncated in chunk 0"):
        from_bytes(data[:-1])


def test_not_a_codes_file():
    with pytest.raises(BitstreamError):
        from_bytes(b"hello")


@pytest.mark.parametrize("version", [1, 2])
def test_golden_files_still_read_bit_exactly(version):
    """Format compatibility: the committed files of each version must parse to the same codes in
    every later version of the reader; the current version's re-serializes to the same bytes."""
    golden = (Path(__file__).parent / "data" / f"golden_v{version}.codes").read_bytes()
    expected = json.loads((Path(__file__).parent / "data" / "golden_v1.json").read_text())   # the same codes
    parsed = from_bytes(golden)
    assert {k: v for k, v in vars(parsed.metadata).items() if v is not None} == expected["metadata"]
    np.testing.assert_array_equal(parsed.codes, np.array(expected["codes"]))
    written = to_bytes(parsed)
    if version == 2:
        assert written == golden
    else:   # one chunk: the same bytes but for the version byte and the CRC that covers it
        assert written[:4] + written[5:-4] == golden[:4] + golden[5:-4] and written[4] == 2


def _as_version_1(data: bytes, chunk_bytes: int) -> bytes:
    """A plain version-2 file of chunks of ``chunk_bytes`` (the last may be shorter) rewritten as
    version 1 wrote it: each later chunk's CRC of its own bytes alone."""
    metadata_end = 8 + struct.unpack_from("<H", data, 6)[0]
    out = bytearray(data[:4] + b"\x01" + data[5:metadata_end])
    offset = metadata_end
    while offset < len(data):
        body = data[offset:min(offset + chunk_bytes, len(data) - 4)]
        out += body + struct.pack("<I", zlib.crc32(bytes(out) + body if offset == metadata_end else body))
        offset += len(body) + 4
    return bytes(out)


def test_chunks_moved_in_a_file_fail_its_crc_and_version_1_files_still_read():
    """Each chunk's CRC starts from the one before (version 2): swapped or repeated chunks of a
    long file fail it, where each chunk's own CRC passed."""
    original = make(codebooks=2, frames=3 * FRAMES_PER_CHUNK)
    data = to_bytes(original)
    chunk = FRAMES_PER_CHUNK * 2 * 10 // 8 + 4   # payload and CRC
    start = len(data) - 3 * chunk
    first, second, third = (data[start + i * chunk:start + (i + 1) * chunk] for i in range(3))
    for moved in (first + third + second, first + second + second, first + third + third):
        with pytest.raises(BitstreamError, match=r"CRC mismatch \(bytes \d+-\d+, chunk [12]\) \(or the chunk is out "
                                                 r"of its place\): the file is corrupted"):
            from_bytes(data[:start] + moved)
    version_1 = _as_version_1(data, chunk - 4)
    np.testing.assert_array_equal(from_bytes(version_1).codes, original.codes)
    with pytest.raises(BitstreamError, match="chunk 1"):
        from_bytes(version_1[:start + chunk] + version_1[start + chunk:-chunk][:-5] + b"\0" + version_1[-chunk - 4:])
