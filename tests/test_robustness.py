"""Unusual and hostile inputs: each gives the right output or one clear error, and no data is lost.

Every input listed in the robustness issue is here; the tiny random model stands in for the
shipped one (what is tested is the plumbing, not the sound).
"""

import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from codec.audio import load_audio, resample
from codec.bitstream import from_bytes, to_bytes
from codec.coding import decode_audio, decode_file, encode_audio, encode_file
from codec.errors import CodecError
from tests.conftest import run_cli as cli
from tests.conftest import tone, write_audio


def round_trip_file(model, path, tmp_path, suffix=".wav"):
    encode_file(model, path, tmp_path / "x.codes", force=True)
    out = tmp_path / f"decoded{suffix}"
    decode_file(model, tmp_path / "x.codes", out, force=True)
    return sf.info(str(out)), out


@pytest.mark.parametrize("num_samples,rate", [
    (0, 16000), (1, 16000), (319, 16000), (320, 16000), (321, 16000), (31999, 16000), (32000, 16000),
    (32001, 16000), (10 * 320 + 37, 16000), (161_856, 24000)])
def test_lengths_round_trip_exactly(tiny_model, num_samples, rate):
    audio = tone(num_samples / rate, rate)
    decoded, decoded_rate = decode_audio(tiny_model, from_bytes(to_bytes(encode_audio(tiny_model, audio, rate, 6.0))))
    assert decoded_rate == rate and decoded.shape == (num_samples, 1)


def test_stereo_channels_are_never_swapped_or_mixed(tiny_model):
    left, right = tone(0.5, 44100, 440), tone(0.5, 44100, 660)
    both = encode_audio(tiny_model, np.concatenate([left, right], axis=1), 44100, 6.0).codes
    np.testing.assert_array_equal(both[0], encode_audio(tiny_model, left, 44100, 6.0).codes[0])
    np.testing.assert_array_equal(both[1], encode_audio(tiny_model, right, 44100, 6.0).codes[0])
    silent = np.zeros_like(left)
    for pair in ([left, silent], [silent, left]):
        codes = encode_audio(tiny_model, np.concatenate(pair, axis=1), 44100, 6.0).codes
        loud = 0 if pair[0] is left else 1
        np.testing.assert_array_equal(codes[loud], encode_audio(tiny_model, left, 44100, 6.0).codes[0])
        np.testing.assert_array_equal(codes[1 - loud], encode_audio(tiny_model, silent, 44100, 6.0).codes[0])


def test_six_channels_at_48k(tiny_model, tmp_path):
    path = write_audio(tmp_path / "six.wav", tone(0.3, 48000, channels=6) / 2, 48000)
    info, _ = round_trip_file(tiny_model, path, tmp_path)
    assert (info.samplerate, info.channels, info.frames) == (48000, 6, 14400)


def test_96k_ultrasonic_tone_does_not_alias(tiny_model, tmp_path):
    t = np.arange(96000 // 4) / 96000
    ultrasonic = 0.4 * np.sin(2 * np.pi * 30000 * t)
    audible = 0.4 * np.sin(2 * np.pi * 1000 * t)
    path = write_audio(tmp_path / "hi.wav", np.stack([audible + ultrasonic, ultrasonic], axis=1), 96000, "PCM_24")
    info, _ = round_trip_file(tiny_model, path, tmp_path)
    assert (info.samplerate, info.channels, info.frames) == (96000, 2, len(t))
    at_model_rate = resample(ultrasonic, 96000, 16000)  # what the model sees of the 30 kHz tone
    assert np.sqrt(np.mean(at_model_rate[200:-200] ** 2)) < 1e-3  # below -60 dB: no alias at 2 kHz


def test_sample_formats_read_alike_and_code_identically(tiny_model, tmp_path):
    # A sine on the 16-bit grid is exact in every format, so every format must read to the very
    # same samples and give the very same codes, in all 24 codebooks.
    audio = np.round(tone(0.4, 16000) * 32768) / 32768
    reads, codes = [], []
    for subtype in ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        path = write_audio(tmp_path / f"{subtype}.wav", audio, 16000, subtype)
        reads.append(load_audio(path)[0])
        codes.append(encode_file(tiny_model, path, tmp_path / f"{subtype}.codes", 12.0)[0].codes)
    for other, other_codes in zip(reads[1:], codes[1:], strict=True):
        np.testing.assert_array_equal(other, reads[0])
        np.testing.assert_array_equal(other_codes, codes[0])
    # off the grid, each format keeps the sine to within one 16-bit step
    for subtype in ("PCM_16", "PCM_24", "PCM_32", "FLOAT"):
        path = write_audio(tmp_path / f"fine_{subtype}.wav", tone(0.4, 16000), 16000, subtype)
        np.testing.assert_allclose(load_audio(path)[0], tone(0.4, 16000).reshape(-1, 1), atol=1 / 32768)


@pytest.mark.parametrize("name,rate,channels,kwargs", [
    ("mono16k.mp3", 16000, 1, {"format": "MP3"}), ("mono48k.mp3", 48000, 1, {"format": "MP3"}),
    ("stereo.ogg", 44100, 2, {"format": "OGG", "subtype": "VORBIS"}),
    ("five.flac", 192000, 5, {"format": "FLAC", "subtype": "PCM_24"})])
def test_compressed_and_exotic_formats(tiny_model, tmp_path, name, rate, channels, kwargs):
    path = tmp_path / name
    sf.write(str(path), tone(1.0 if rate < 100000 else 0.25, rate, channels=channels) / 2, rate, **kwargs)
    expected = sf.info(str(path))
    info, _ = round_trip_file(tiny_model, path, tmp_path)
    assert (info.samplerate, info.channels, info.frames) == (rate, channels, expected.frames)


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, offset = [], 12
    while offset + 8 <= len(data):
        tag, size = data[offset:offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        chunks.append((tag, data[offset + 8:offset + 8 + size]))
        offset += 8 + size + (size & 1)
    return chunks


def _riff(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"WAVE" + b"".join(tag + struct.pack("<I", len(c)) + c + (b"\0" if len(c) & 1 else b"")
                              for tag, c in chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("extra", [
    [(b"LIST", b"INFOISFT\x06\x00\x00\x00codec\x00")],   # a LIST/INFO chunk
    [(b"junk", b"odd")],                                    # an odd-sized chunk with its pad byte
    [(b"fact", struct.pack("<I", 8000))],                   # a fact chunk
])
def test_wav_with_extra_chunks(tiny_model, tmp_path, extra):
    plain = write_audio(tmp_path / "plain.wav", tone(0.5, 16000), 16000, "PCM_16").read_bytes()
    chunks = _chunks(plain)
    crafted = tmp_path / "crafted.wav"
    crafted.write_bytes(_riff(chunks[:1] + extra + chunks[1:]))
    np.testing.assert_array_equal(load_audio(crafted)[0], load_audio(tmp_path / "plain.wav")[0])
    info, _ = round_trip_file(tiny_model, crafted, tmp_path)
    assert info.frames == 8000


def test_wave_format_extensible_24_bit(tiny_model, tmp_path):
    path = tmp_path / "ext.wav"
    sf.write(str(path), tone(0.5, 16000, channels=2) / 2, 16000, format="WAVEX", subtype="PCM_24")
    assert struct.unpack_from("<H", path.read_bytes(), 20)[0] == 0xFFFE
    info, _ = round_trip_file(tiny_model, path, tmp_path)
    assert (info.channels, info.frames) == (2, 8000)


@pytest.mark.parametrize("signal", [np.zeros(16000), np.full(16000, 0.25), np.full(16000, -1.0)])
def test_silence_and_dc_give_finite_output(tiny_model, signal):
    decoded, _ = decode_audio(tiny_model, encode_audio(tiny_model, signal[:, None], 16000, 6.0))
    assert np.all(np.isfinite(decoded)) and decoded.shape == (16000, 1)


def test_float_wav_beyond_full_scale_is_limited_with_a_count(tiny_model, tmp_path):
    audio = tone(0.5, 16000) * 8   # peaks at ±4.0
    path = write_audio(tmp_path / "hot.wav", audio, 16000, "FLOAT")
    result = cli("encode", path, tmp_path / "hot.codes", "--model", tiny_model_dir_of(tiny_model))
    assert result.exit_code == 0
    outside = int(np.count_nonzero(np.abs(audio) > 1))
    peak = float(np.max(np.abs(audio.astype(np.float32))))
    assert f"{outside} samples were beyond ±1.0 full scale (peak {peak:.6g})" in " ".join(result.output.split())


def test_a_float_wav_of_integer_scale_samples_is_refused_as_the_api_refuses_it(tiny_model, tmp_path):
    """16-bit PCM values stored as floats (peaks near 32767): clipped to ±1 they would code a square
    wave; the file is refused with the fix, and nothing is written."""
    audio = tone(0.5, 16000) * 32767
    path = write_audio(tmp_path / "int_scale.wav", audio, 16000, "FLOAT")
    result = cli("encode", path, tmp_path / "int_scale.codes", "--model", tiny_model_dir_of(tiny_model))
    assert result.exit_code == 1 and not (tmp_path / "int_scale.codes").exists()
    message = " ".join(result.output.split())
    assert "int_scale.wav: samples reach" in message and "far outside [-1, 1]" in message
    assert "divide by 32768" in message


def test_decoded_overshoot_is_clipped_with_a_count_never_wrapped(tiny_model, tmp_path, monkeypatch, valid_codes):
    import codec.coding

    overshoot = np.array([[1.5], [-1.5], [0.5], [-3.0]], dtype=np.float32)
    monkeypatch.setattr(codec.coding, "decode_blocks", lambda model, codes_file: iter([overshoot]))
    (tmp_path / "hot.codes").write_bytes(valid_codes)
    report = decode_file(tiny_model, tmp_path / "hot.codes", tmp_path / "hot.wav")
    assert any("3 decoded samples exceeded ±1.0 and were clipped" in w for w in report.warnings)
    written, _ = sf.read(str(tmp_path / "hot.wav"), dtype="int16")
    assert list(written[:4]) == [32767, -32768, 16384, -32768]      # full scale, the same sign


def test_float_output_keeps_decoded_overshoot(tiny_model, tmp_path, monkeypatch, valid_codes):
    import codec.coding

    overshoot = np.array([[1.5], [-1.5], [0.5], [-3.0]], dtype=np.float32)
    monkeypatch.setattr(codec.coding, "decode_blocks", lambda model, codes_file: iter([overshoot]))
    (tmp_path / "hot.codes").write_bytes(valid_codes)
    for suffix in (".wav", ".aiff"):
        report = decode_file(tiny_model, tmp_path / "hot.codes", tmp_path / f"hot{suffix}", sample_format="float")
        assert not report.warnings
        assert sf.info(str(tmp_path / f"hot{suffix}")).subtype == "FLOAT"
        written, _ = sf.read(str(tmp_path / f"hot{suffix}"), dtype="float32")
        assert list(written[:4]) == [1.5, -1.5, 0.5, -3.0]


@pytest.mark.parametrize("sample_format,suffix,subtype", [
    ("pcm16", ".wav", "PCM_16"), ("PCM24", ".flac", "PCM_24"), ("pcm24", ".aiff", "PCM_24"),
    ("float", ".wav", "FLOAT")])
def test_a_chosen_sample_format_is_written(tiny_model, tmp_path, valid_codes, sample_format, suffix, subtype):
    (tmp_path / "good.codes").write_bytes(valid_codes)
    decode_file(tiny_model, tmp_path / "good.codes", tmp_path / f"out{suffix}", sample_format=sample_format)
    assert sf.info(str(tmp_path / f"out{suffix}")).subtype == subtype


@pytest.mark.parametrize("sample_format,suffix,message", [
    ("float", ".flac", "FLAC holds integer samples only"), ("pcm16", ".ogg", "OGG Vorbis is lossy"),
    ("f32", ".wav", "sample format 'f32' is not supported; choose pcm16, pcm24, float")])
def test_a_sample_format_the_output_cannot_hold_is_refused(tiny_model, tmp_path, valid_codes, sample_format, suffix,
                                                            message):
    (tmp_path / "good.codes").write_bytes(valid_codes)
    with pytest.raises(CodecError, match=message):
        decode_file(tiny_model, tmp_path / "good.codes", tmp_path / f"out{suffix}", sample_format=sample_format)
    assert not (tmp_path / f"out{suffix}").exists()


def tiny_model_dir_of(model):
    return model.source_dir


@pytest.fixture(autouse=True)
def _remember_dir(tiny_model, tiny_model_dir):
    tiny_model.source_dir = tiny_model_dir


@pytest.mark.parametrize("suffix", [".wav", ".aiff"])
def test_a_truncated_file_is_coded_as_far_as_it_reads_with_a_warning(tiny_model, tmp_path, suffix):
    # libsndfile reads a cut WAV or AIFF as a shorter, whole one; the header's data size tells
    data = write_audio(tmp_path / f"full{suffix}", tone(1.0, 16000), 16000, "PCM_16").read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[:-1000])
    result = cli("encode", cut, tmp_path / "cut.codes", "--model", tiny_model.source_dir)
    assert result.exit_code == 0
    info = from_bytes((tmp_path / "cut.codes").read_bytes()).metadata
    assert info.samples == 16000 - 500
    assert "file is truncated: its header announces 16000 samples, 15500 could be read" in result.output
    result = cli("stream", "--input", cut, "--output", tmp_path / "streamed.wav", "--no-play", "--fast",
                 "--model", tiny_model.source_dir)
    assert result.exit_code == 0 and "file is truncated: its header announces 16000 samples, 15500 could be " \
        "read; streamed those" in result.output, result.output


def test_a_cut_flac_is_coded_as_far_as_it_decodes_with_a_warning(tiny_model, tmp_path):
    """libsndfile's FLAC decoder fails the whole block at a cut; what decodes of it is kept."""
    rng = np.random.default_rng(0)
    data = write_audio(tmp_path / "full.flac", 0.3 * rng.standard_normal((48000, 1)), 16000).read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[:len(data) // 2])
    result = cli("encode", tmp_path / "cut.flac", tmp_path / "cut.codes", "--model", tiny_model.source_dir)
    assert result.exit_code == 0, result.output
    samples = from_bytes((tmp_path / "cut.codes").read_bytes()).metadata.samples
    assert 16000 < samples < 48000 and f"announces 48000 samples, {samples} could be read" in result.output



def test_a_flac_damaged_in_its_middle_is_coded_as_far_as_it_decodes(tiny_model, tmp_path):
    # (its decoder, once out of sync, could not seek back to read the block again in pieces:
    # "cannot decode audio after 0 samples", though the first half decoded)
    rng = np.random.default_rng(0)
    data = bytearray(write_audio(tmp_path / "full.flac", 0.3 * rng.standard_normal((200000, 1)), 16000).read_bytes())
    data[len(data) // 2:len(data) // 2 + 2000] = bytes(2000)
    (tmp_path / "damaged.flac").write_bytes(bytes(data))
    result = cli("encode", tmp_path / "damaged.flac", tmp_path / "d.codes", "--model", tiny_model.source_dir)
    assert result.exit_code == 0, result.output
    samples = from_bytes((tmp_path / "d.codes").read_bytes()).metadata.samples
    assert 50000 < samples < 200000 and f"announces 200000 samples, {samples} could be read" in result.output


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (Debian package ffmpeg)")
def test_a_flac_saved_from_a_pipe_is_refused_with_how_to_convert_it(tiny_model, tmp_path):
    source = write_audio(tmp_path / "in.wav", tone(0.5, 16000), 16000)
    piped = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(source), "-f", "flac", "-"],
                           capture_output=True, check=True).stdout   # no length in its header
    (tmp_path / "piped.flac").write_bytes(piped)
    result = cli("encode", tmp_path / "piped.flac", tmp_path / "p.codes", "--model", tiny_model.source_dir)
    assert result.exit_code == 1 and "the header does not give the length" in result.output
    assert "convert it first (e.g. ffmpeg -i IN.flac OUT.wav), or pipe WAV instead" in " ".join(result.output.split())


def test_a_chained_ogg_file_is_warned_of(tiny_model, tmp_path):
    # (`cat a.ogg b.ogg`: libsndfile reads the first stream only and calls it the whole file)
    one = write_audio(tmp_path / "one.ogg", tone(0.5, 16000), 16000, "VORBIS").read_bytes()
    (tmp_path / "chained.ogg").write_bytes(one * 3)
    result = cli("encode", tmp_path / "chained.ogg", tmp_path / "c.codes", "--model", tiny_model.source_dir)
    assert result.exit_code == 0 and "2 more Ogg streams follow the first (a chained file), which libsndfile does " \
        "not read: coded the first stream's 8000 samples only" in " ".join(result.output.split()), result.output
    result = cli("encode", tmp_path / "one.ogg", tmp_path / "o.codes", "--model", tiny_model.source_dir)
    assert result.exit_code == 0 and "warning" not in result.output, result.output


def test_a_streamed_wav_of_unknown_data_size_reads_whole_without_a_warning(tiny_model, tmp_path):
    data = bytearray(write_audio(tmp_path / "full.wav", tone(0.5, 16000), 16000, "PCM_16").read_bytes())
    data[40:44] = b"\xff\xff\xff\xff"   # the data chunk's size, as ffmpeg writes it to a pipe
    (tmp_path / "streamed.wav").write_bytes(bytes(data))
    result = cli("encode", tmp_path / "streamed.wav", tmp_path / "s.codes", "--model", tiny_model.source_dir)
    assert result.exit_code == 0 and "truncated" not in result.output
    assert from_bytes((tmp_path / "s.codes").read_bytes()).metadata.samples == 8000


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (Debian package ffmpeg) for MP3")
def test_an_mp3_piped_from_ffmpeg_is_not_called_truncated(tiny_model, tmp_path):
    # without a seekable output, ffmpeg leaves the frame count out: libsndfile estimates the length
    source = write_audio(tmp_path / "in.wav", tone(1.0, 16000), 16000)
    piped = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(source), "-f", "mp3", "-"],
                           capture_output=True, check=True).stdout
    (tmp_path / "piped.mp3").write_bytes(piped)
    result = cli("encode", tmp_path / "piped.mp3", tmp_path / "p.codes", "--model", tiny_model.source_dir)
    assert result.exit_code == 0 and "truncated" not in result.output, result.output
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(source), str(tmp_path / "whole.mp3")], check=True)
    whole = (tmp_path / "whole.mp3").read_bytes()   # written to a file: its header counts the frames
    (tmp_path / "cut.mp3").write_bytes(whole[:len(whole) // 2])   # so a cut is still reported
    result = cli("encode", tmp_path / "cut.mp3", tmp_path / "c.codes", "--model", tiny_model.source_dir)
    assert result.exit_code == 0 and "file is truncated" in result.output, result.output


def test_mp3_files_joined_end_to_end_are_reported_as_read_up_to_the_first_ones_length(tiny_model, tmp_path):
    # libmpg123 reads as many frames as the first file's Xing header counts, and only notes the size
    parts = []
    for name, seconds in (("a", 0.5), ("b", 0.7)):
        source = write_audio(tmp_path / f"{name}.wav", tone(seconds, 16000), 16000)
        subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(source), str(tmp_path / f"{name}.mp3")], check=True)
        parts.append((tmp_path / f"{name}.mp3").read_bytes())
    (tmp_path / "joined.mp3").write_bytes(b"".join(parts))
    result = cli("encode", tmp_path / "joined.mp3", tmp_path / "j.codes", "--model", tiny_model.source_dir)
    assert result.exit_code == 0, result.output
    assert "joined.mp3: more MPEG data follows the" in result.output and "joined end to end" in result.output
    assert "damaged" not in result.output and "truncated" not in result.output
    whole = cli("encode", tmp_path / "a.mp3", tmp_path / "a.codes", "--model", tiny_model.source_dir)
    assert whole.exit_code == 0 and "Xing" not in whole.output, whole.output


def test_damaged_mp3_gives_one_warning_not_the_decoders_notes(tiny_model, tmp_path, capfd):
    source = write_audio(tmp_path / "in.wav", tone(1.0, 16000), 16000)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(source), str(tmp_path / "whole.mp3")], check=True)
    data = bytearray((tmp_path / "whole.mp3").read_bytes())
    frame = data.index(b"\xff\xf3", len(data) // 2)   # an MPEG-2 Layer III frame's sync word
    data[frame:frame + 4] = b"\xff\x01\x38\xc4"   # a frame header libmpg123 rejects
    (tmp_path / "bad.mp3").write_bytes(data)
    capfd.readouterr()
    result = cli("encode", tmp_path / "bad.mp3", tmp_path / "bad.codes", "--model", tiny_model.source_dir)
    printed = capfd.readouterr()   # libmpg123 writes to file descriptor 2 itself, past click's capture
    assert result.exit_code == 0 and "Note:" not in printed.err + result.output, printed.err + result.output
    assert "bad.mp3: damaged MP3 data: the decoder skipped what it could not read, at 1 place(s)" in result.output


def test_only_a_file_that_may_be_mp3_has_its_decoder_messages_collected(tmp_path, monkeypatch):
    """Collecting them redirects file descriptor 2, which a WAV or FLAC file never needs."""
    from codec import audio

    redirected, dup2 = [], audio.os.dup2
    monkeypatch.setattr(audio.os, "dup2", lambda *fds: redirected.append(fds) or dup2(*fds))
    for suffix in ("wav", "flac"):
        with audio.open_audio(write_audio(tmp_path / f"in.{suffix}", tone(0.1, 16000), 16000)):
            pass
    assert redirected == []
    (tmp_path / "headless").write_bytes(b"\xff\xf3" + bytes(100))   # what might be an MP3 frame
    with pytest.raises(CodecError):
        audio.open_audio(tmp_path / "headless")
    assert len(redirected) == 2   # to a temporary file and back


def test_a_pipe_among_audio_files_is_named_as_a_pipe(tmp_path):
    from codec.audio import open_audio

    os.mkfifo(tmp_path / "p.wav")   # in a training folder, say: reading it would wait for a writer
    with pytest.raises(CodecError, match=r"p.wav: is not a regular file \(a pipe, device or socket\)"):
        open_audio(tmp_path / "p.wav")


def test_riff_size_ffffffff_reads(tiny_model, tmp_path):
    data = bytearray(write_audio(tmp_path / "full.wav", tone(0.5, 16000), 16000, "PCM_16").read_bytes())
    data[4:8] = b"\xff\xff\xff\xff"
    odd = tmp_path / "streamed.wav"
    odd.write_bytes(bytes(data))
    info, _ = round_trip_file(tiny_model, odd, tmp_path)
    assert info.frames == 8000


def _wav_with_channels(path, channels: int) -> None:
    """A valid 16-bit WAV of 10 frames (soundfile itself refuses to write over 1024 channels)."""
    import wave

    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(bytes(2 * channels * 10))


@pytest.mark.parametrize("name,message", [
    ("take.m4a", "take.m4a: .m4a audio cannot be read (supported: WAV, FLAC, OGG (Vorbis, Opus), MP3, AIFF, CAF, W64); "
                 "convert it first, e.g. ffmpeg -i {folder}/take.m4a {folder}/take.wav"),
    ("take.raw", "take.raw: raw PCM cannot be read (no header gives its sample rate, channels and sample format); "
                 "wrap it as WAV first, e.g. ffmpeg -f s16le -ar 16000 -ac 1 -i {folder}/take.raw {folder}/take.wav"),
    ("take", "take: cannot read audio (Format not recognised.); supported: WAV, FLAC, OGG (Vorbis, Opus), MP3, AIFF, "
             "CAF, W64; if it is audio in another format, convert it first, e.g. "
             "ffmpeg -i {folder}/take {folder}/take.wav"),
    ("take.wav", "take.wav: cannot read audio (Format not recognised.); supported: WAV, FLAC, OGG (Vorbis, Opus), "
                 "MP3, AIFF, CAF, W64\n"),   # a supported suffix: damaged, not to convert
    ("notes.txt", "notes.txt: cannot read audio (Format not recognised.); supported: WAV, FLAC, OGG (Vorbis, Opus), "
                  "MP3, AIFF, CAF, W64; a .txt file is not audio\n"),   # never to convert
])
def test_audio_that_is_not_read_says_how_to_convert_it(tmp_path, name, message):
    (tmp_path / name).write_bytes(bytes(range(256)) * 40)
    result = cli("encode", tmp_path / name, tmp_path / "out.codes")
    assert result.exit_code == 1 and message.format(folder=tmp_path) in result.output


def test_mp4_audio_under_another_suffix_and_a_damaged_mp3_are_named_for_what_they_are(tmp_path):
    """An .m4a renamed .wav is named as MP4 with the conversion (not "Format not recognised"); an .mp3
    without MP3 frames is not "File does not exist" (libsndfile's words) when it exists."""
    (tmp_path / "talk.wav").write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00" + bytes(4000))
    result = cli("encode", tmp_path / "talk.wav", tmp_path / "out.codes")
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert "talk.wav: is MP4/M4A audio (AAC or ALAC), whatever its name says" in message
    assert f"ffmpeg -i {tmp_path}/talk.wav {tmp_path}/talk-converted.wav" in message
    (tmp_path / "photo.wav").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00" + bytes(4000))   # a picture
    result = cli("encode", tmp_path / "photo.wav", tmp_path / "out.codes")
    assert result.exit_code == 1 and "MP4" not in result.output, result.output
    (tmp_path / "tagged.mp3").write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x0a" + bytes(10))   # a tag, no frames
    result = cli("encode", tmp_path / "tagged.mp3", tmp_path / "out.codes")
    message = " ".join(result.output.split())
    assert result.exit_code == 1 and "does not exist" not in message, message
    assert "tagged.mp3: cannot read audio (no audio data libsndfile can decode: damaged, or another format)" in message


@pytest.mark.parametrize("suffix, format", [(".aifc", "AIFF"), (".caf", "CAF"), (".w64", "W64")])
def test_aifc_caf_and_w64_are_audio_in_a_folder_as_alone(tmp_path, tiny_model, suffix, format):
    """libsndfile reads them: a batch codes them as a single file is coded (it left them out as "not audio")."""
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(str(folder / f"take{suffix}"), tone(0.3, 16000), 16000, format=format, subtype="PCM_16")
    result = cli("encode", folder, tmp_path / "codes", "--model", tiny_model_dir_of(tiny_model))
    assert result.exit_code == 0 and "not audio" not in result.output, result.output
    assert (tmp_path / "codes" / "take.codes").is_file()


def test_a_supported_container_with_an_encoding_libsndfile_lacks_says_how_to_convert_it():
    """AAC in CAF (what macOS records): CAF is read, AAC is not (libsndfile's "Supported file format
    but unsupported encoding"); the conversion is named, as for formats libsndfile lacks."""
    from pathlib import Path

    from codec.audio import unreadable

    message = unreadable(Path("memo.caf"), "Supported file format but unsupported encoding.")
    assert message.startswith("memo.caf: cannot read audio (Supported file format but unsupported encoding.)")
    assert message.endswith("; convert it first, e.g. ffmpeg -i memo.caf memo.wav")


def test_a_piped_input_that_is_not_read_is_to_be_converted_in_the_pipe(tmp_path):
    result = cli("encode", "-", tmp_path / "out.codes", input=bytes(range(256)) * 40)
    assert result.exit_code == 1
    assert "stdin: cannot read audio" in result.output and "ffmpeg -i in.m4a -f wav - | codec" in result.output
    # M4A piped in is named as such, with the conversion in the pipe (not "ffmpeg -i stdin ...", no such file)
    result = cli("encode", "-", tmp_path / "out.codes", input=b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00" + bytes(4000))
    message = " ".join(result.output.split())
    assert result.exit_code == 1 and "stdin: is MP4/M4A audio" in message, message
    assert "ffmpeg -i in.m4a -f wav - | codec" in message and "ffmpeg -i stdin" not in message


def test_ogg_flac_is_named_for_what_it_is(tmp_path):
    """FLAC in an Ogg container: libsndfile's FLAC decoder says only "unknown error in flac decoder"."""
    speech = tmp_path / "speech.wav"
    sf.write(speech, tone(0.5, 16000), 16000)
    ogg = tmp_path / "speech.ogg"
    made = subprocess.run(["ffmpeg", "-v", "error", "-i", str(speech), "-c:a", "flac", "-f", "ogg", str(ogg)],
                          capture_output=True) if shutil.which("ffmpeg") else None
    if made is None or made.returncode or not ogg.is_file():
        pytest.skip("ffmpeg cannot write Ogg FLAC here")
    for path, piped in [(ogg, False), ("-", True)]:
        result = cli("encode", path, tmp_path / "out.codes", input=ogg.read_bytes() if piped else None)
        message = " ".join(result.output.split())
        assert result.exit_code == 1, message
        assert f"{'stdin' if piped else ogg}: is FLAC in an Ogg container (Ogg FLAC), which cannot be read" in message
        assert ("ffmpeg -i in.ogg -f wav - | codec" if piped else f"ffmpeg -i {ogg} {tmp_path}/speech-converted.wav") \
            in message


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt \x10\x00\x00\x00"), "cannot read audio"),
    (lambda p: p.write_text("this is not audio\n" * 20), "cannot read audio"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: _wav_with_channels(p, 1025), "bad.wav: has more channels than can be read (libsndfile reads at most"),
])
def test_unreadable_inputs_give_one_line(tiny_model, tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    result = cli("encode", path, tmp_path / "out.codes", "--model", tiny_model.source_dir)
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out.codes").exists()


@pytest.fixture
def valid_codes(tiny_model, tmp_path):
    path = write_audio(tmp_path / "in.wav", tone(1.0, 16000), 16000)
    encode_file(tiny_model, path, tmp_path / "good.codes")
    return (tmp_path / "good.codes").read_bytes()


@pytest.mark.parametrize("corrupt,message", [
    (lambda d: d[:8] + bytes([d[8] ^ 0x20]) + d[9:], "corrupt metadata"),   # a header/metadata byte
    (lambda d: d[:-40] + bytes([d[-40] ^ 0x01]) + d[-39:], "CRC mismatch"),  # a payload byte
    (lambda d: d[:len(d) // 2], "truncated"),
    (lambda d: d[:8 + struct.unpack_from("<H", d, 6)[0]], "truncated in chunk 0"),  # header only
    (lambda d: b"", "is empty (0 bytes), not a .codes file"),
    (lambda d: d[:4] + b"\x13\x37" * 50, "version 19 at offset 4; this codec reads versions 1 to 2 (far beyond any "
                                          "version yet: the file is damaged"),     # junk after magic
    (lambda d: d[:6] + b"\xff\xff" + d[8:], "should end at byte 65543, the file has"),   # the metadata length
    (lambda d: d[:6] + b"\xff\xff" + d[8:], "or the metadata's length field (offset 6) is damaged"),
    # a length field one short: the JSON object lacks its end
    (lambda d: d[:6] + struct.pack("<H", struct.unpack_from("<H", d, 6)[0] - 1) + d[8:],
     "corrupt metadata at bytes 8-"),
    (lambda d: d[:6] + struct.pack("<H", struct.unpack_from("<H", d, 6)[0] - 1) + d[8:],
     "(not JSON, or the metadata's length field (offset 6) is damaged)"),
    (lambda d: d[:4] + b"\x03" + d[5:], "version byte at offset 4 reads 3"),   # one damaged byte
    (lambda d: d[:4] + b"\x03" + d[5:8] + b"{}" + bytes(40), "written by a newer codec"),  # another layout
])
def test_corrupt_codes_files_give_one_line(tiny_model, tmp_path, valid_codes, corrupt, message):
    bad = tmp_path / "bad.codes"
    bad.write_bytes(corrupt(valid_codes))
    result = cli("decode", bad, tmp_path / "out.wav", "--model", tiny_model.source_dir)
    assert result.exit_code == 1 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out.wav").exists()


def test_a_damaged_model_name_is_a_crc_error_not_a_missing_model(tmp_path, valid_codes):
    damaged = valid_codes.replace(b'"tiny-16k"', b'"tioy-16k"')      # one byte of the metadata
    (tmp_path / "damaged.codes").write_bytes(damaged)
    for command in (["decode", tmp_path / "damaged.codes", tmp_path / "out.wav"], ["info", tmp_path / "damaged.codes"]):
        result = cli(*command)
        assert result.exit_code == 1 and "CRC mismatch" in result.output, result.output


def test_codes_naming_a_model_that_is_not_installed(tmp_path, valid_codes):
    parsed = from_bytes(valid_codes)
    parsed.metadata.model = "tiny-99k"                          # a valid file naming another model
    (tmp_path / "other.codes").write_bytes(to_bytes(parsed))
    result = cli("decode", tmp_path / "other.codes", tmp_path / "out.wav")
    assert result.exit_code == 1 and "model 'tiny-99k' not found" in result.output and "--model" in result.output


def test_weights_hash_mismatch_is_refused(tiny_model, tmp_path, valid_codes):
    tiny_model.weights_sha256, real = "f" * 64, tiny_model.weights_sha256
    try:
        with pytest.raises(CodecError, match="made by model 'tiny-16k'"):
            decode_audio(tiny_model, from_bytes(valid_codes))
    finally:
        tiny_model.weights_sha256 = real


def test_config_that_does_not_match_the_weights(tiny_model_dir, tmp_path):
    import json
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes((tiny_model_dir / "model.safetensors").read_bytes())
    config = json.loads((tiny_model_dir / "config.json").read_text())
    config["num_codebooks"] = 12
    (broken / "config.json").write_text(json.dumps(config))
    result = cli("encode", write_audio(tmp_path / "a.wav", tone(0.2, 16000), 16000), tmp_path / "a.codes",
                 "--model", broken)
    assert result.exit_code == 1
    assert "config.json does not match model.safetensors" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_same_path_for_input_and_output_is_refused(tiny_model, tmp_path):
    path = write_audio(tmp_path / "a.wav", tone(0.2, 16000), 16000)
    before = path.read_bytes()
    result = cli("encode", path, path, "--model", tiny_model.source_dir, "--force")
    assert result.exit_code == 1 and "overwrite the input" in result.output
    assert path.read_bytes() == before
    # the same file by another route (as a bind mount of its folder or a case-insensitive disk give)
    os.link(path, tmp_path / "other.wav")
    result = cli("encode", path, tmp_path / "other.wav", "--model", tiny_model.source_dir, "--force")
    assert result.exit_code == 1 and "is the input file under another name" in result.output
    assert path.read_bytes() == before


@pytest.mark.long
def test_a_redirection_to_or_from_the_input_is_refused(tiny_model, tmp_path):
    """``codec encode a.wav - 1<> a.wav`` and ``codec encode - a.wav --force < a.wav``."""
    path = write_audio(tmp_path / "a.wav", tone(0.2, 16000), 16000)
    before = path.read_bytes()
    command = [sys.executable, "-c", "from codec.cli.main import run; run()"]
    model = ["--model", str(tiny_model.source_dir)]
    with open(path, "r+b") as same:
        result = subprocess.run([*command, "encode", str(path), "-", *model], stdout=same, stderr=subprocess.PIPE,
                                text=True)
    assert result.returncode == 1 and "stdout is redirected to this input file" in result.stderr
    with open(path, "rb") as same:
        result = subprocess.run([*command, "encode", "-", str(path), "--force", *model], stdin=same,
                                stderr=subprocess.PIPE, text=True)
    assert result.returncode == 1 and "stdin is read from this file" in result.stderr
    with open(path, "r+b") as same:   # codec encode - - < a.wav 1<> a.wav
        result = subprocess.run([*command, "encode", "-", "-", *model], stdin=same, stdout=same,
                                stderr=subprocess.PIPE, text=True)
    assert result.returncode == 1 and "stdin and stdout are the same file" in result.stderr
    assert path.read_bytes() == before
    with open(path, "wb") as same:   # codec encode a.wav - > a.wav: the shell has emptied it already
        result = subprocess.run([*command, "encode", str(path), "-", *model], stdout=same, stderr=subprocess.PIPE,
                                text=True)
    assert result.returncode == 1 and "which the shell's > emptied before codec started" in result.stderr


def test_failed_decode_leaves_the_old_output_intact(tiny_model, tmp_path, valid_codes):
    out = tmp_path / "out.wav"
    out.write_bytes(b"old contents")
    bad = tmp_path / "bad.codes"
    bad.write_bytes(valid_codes[:-5])
    result = cli("decode", bad, out, "--model", tiny_model.source_dir, "--force")
    assert result.exit_code == 1
    assert out.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_interrupted_write_leaves_no_partial_file(tiny_model, tmp_path, monkeypatch, valid_codes):
    import codec.coding

    (tmp_path / "good.codes").write_bytes(valid_codes)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
        yield  # pragma: no cover

    monkeypatch.setattr(codec.coding, "decode_blocks", interrupted)
    with pytest.raises(KeyboardInterrupt):
        decode_file(tiny_model, tmp_path / "good.codes", tmp_path / "out.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.codes", "in.wav"]


def test_an_empty_file_decodes_to_wav_and_is_refused_as_flac(tiny_model, tmp_path):
    """libsndfile writes no FLAC header for zero samples: say so, and leave no empty file."""
    source = write_audio(tmp_path / "empty.wav", np.zeros((0, 1)), 16000)
    encode_file(tiny_model, source, tmp_path / "e.codes")
    decode_file(tiny_model, tmp_path / "e.codes", tmp_path / "e.wav")
    assert sf.info(str(tmp_path / "e.wav")).frames == 0
    with pytest.raises(CodecError, match="empty FLAC"):
        decode_file(tiny_model, tmp_path / "e.codes", tmp_path / "e.flac")
    assert not (tmp_path / "e.flac").exists()


def test_an_output_that_appears_while_coding_is_kept(tiny_model, tmp_path, monkeypatch):
    """The 'exists' check runs at the start; a file written there meanwhile (another run, the user)
    is not replaced without --force."""
    import codec.coding

    source = write_audio(tmp_path / "in.wav", tone(0.3, 16000), 16000)
    out = tmp_path / "out.codes"
    original = codec.coding.encode_blocks

    def and_meanwhile(*args, **kwargs):
        out.write_bytes(b"precious")
        return original(*args, **kwargs)

    monkeypatch.setattr(codec.coding, "encode_blocks", and_meanwhile)
    with pytest.raises(CodecError, match=r"out.codes exists \(it appeared while this ran\); pass --force"):
        encode_file(tiny_model, source, out)
    assert out.read_bytes() == b"precious" and sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "out.codes"]
    encode_file(tiny_model, source, out, force=True)
    assert out.read_bytes().startswith(b"CODC")


def test_a_full_disk_is_named_where_libsndfile_says_system_error(tiny_model, tmp_path, monkeypatch, valid_codes):
    import os
    from types import SimpleNamespace

    (tmp_path / "in.codes").write_bytes(valid_codes)

    def system_error(self, data):   # as libsndfile reports a write that found the disk full
        raise sf.LibsndfileError(2, "")

    monkeypatch.setattr(sf.SoundFile, "write", system_error)
    with pytest.raises(CodecError, match=r"out.wav: cannot write \(System error"):   # the disk has room: as said
        decode_file(tiny_model, tmp_path / "in.codes", tmp_path / "out.wav")
    monkeypatch.setattr(os, "statvfs", lambda path: SimpleNamespace(f_bavail=3, f_frsize=4096))
    with pytest.raises(CodecError, match=r"out.wav: cannot write \(No space left on device\)"):
        decode_file(tiny_model, tmp_path / "in.codes", tmp_path / "out.wav")
    assert not list(tmp_path.glob("*out*")) and not list(tmp_path.glob(".*"))   # no partial file left
