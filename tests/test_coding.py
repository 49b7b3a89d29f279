"""Round-trip properties of whole-signal coding: exact length, rate and channels at any input."""

import os
import re

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.audio import load_audio
from codec.bitstream import from_bytes, to_bytes
from codec.coding import decode_audio, decode_file, encode_audio, encode_file
from codec.errors import CodecError
from tests.conftest import tone, write_audio


@pytest.mark.parametrize("num_samples", [0, 1, 319, 320, 321, 160_000])
def test_awkward_lengths(tiny_model, num_samples):
    audio = tone(num_samples / 16000, 16000)
    codes_file = from_bytes(to_bytes(encode_audio(tiny_model, audio, 16000, 6.0)))
    assert codes_file.codes.shape == (1, 12, -(-num_samples // 320))
    decoded, rate = decode_audio(tiny_model, codes_file)
    assert rate == 16000 and decoded.shape == (num_samples, 1)
    assert np.isfinite(decoded).all()


@pytest.mark.parametrize("sample_rate", [8000, 16000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_rates_and_channels(tiny_model, sample_rate, channels):
    audio = tone(0.37, sample_rate, channels=channels)
    decoded, rate = decode_audio(tiny_model, encode_audio(tiny_model, audio, sample_rate, 3.0))
    assert rate == sample_rate and decoded.shape == audio.shape


def test_channels_are_coded_independently(tiny_model):
    left = tone(0.5, 16000, 440)
    stereo = np.concatenate([left, np.zeros_like(left)], axis=1)
    codes = encode_audio(tiny_model, stereo, 16000, 6.0).codes
    alone = encode_audio(tiny_model, left, 16000, 6.0).codes
    np.testing.assert_array_equal(codes[0], alone[0])
    silent = encode_audio(tiny_model, stereo[:, 1:], 16000, 6.0).codes
    np.testing.assert_array_equal(codes[1], silent[0])


def test_a_file_of_many_channels_is_coded_in_groups_as_each_channel_alone(tiny_model, monkeypatch):
    # (all of a file's channels in one batch took twice as long at 256 channels as groups of 16)
    import codec.streaming

    monkeypatch.setattr(codec.streaming, "CHANNEL_GROUP", 2)   # 5 channels: sessions of 2, 2 and 1
    audio = 0.1 * np.random.default_rng(1).standard_normal((8000, 5))
    codes_file = encode_audio(tiny_model, audio, 16000, 6.0)
    decoded, _ = decode_audio(tiny_model, codes_file)
    for channel in (0, 3, 4):
        alone = encode_audio(tiny_model, audio[:, channel:channel + 1], 16000, 6.0)
        np.testing.assert_array_equal(codes_file.codes[channel], alone.codes[0])
        np.testing.assert_allclose(decoded[:, channel], decode_audio(tiny_model, alone)[0][:, 0], atol=1e-5)
    assert isinstance(codec.streaming.file_encoder(tiny_model, 12, 5), codec.streaming.ChannelSessions)


@pytest.mark.parametrize("kbps,codebooks", [(1.5, 3), (3.0, 6), (6.0, 12), (12.0, 24)])
def test_bitrates(tiny_model, kbps, codebooks):
    codes_file = encode_audio(tiny_model, tone(1.0, 16000), 16000, kbps)
    assert codes_file.metadata.codebooks == codebooks
    assert len(to_bytes(codes_file)) <= kbps * 1000 / 8 * 1.0 + 200


@pytest.mark.parametrize("sample_rate", [0, 1, 999, 384001])
def test_sample_rates_outside_1_to_384_khz_are_refused(tiny_model, sample_rate):
    with pytest.raises(CodecError, match=f"sample rate {sample_rate} Hz is not supported"):
        encode_audio(tiny_model, np.zeros((100, 1)), sample_rate, 6.0)


def test_file_names_that_are_not_utf8_are_read_and_written(tiny_model, tmp_path):
    name = os.fsdecode(b"speech\xff")   # a Latin-1 name, as old archives hold
    source = write_audio(tmp_path / "plain.wav", tone(0.2, 16000), 16000, "PCM_16").rename(tmp_path / f"{name}.wav")
    encode_file(tiny_model, source, tmp_path / f"{name}.codes")
    decode_file(tiny_model, tmp_path / f"{name}.codes", tmp_path / f"{name}.flac")
    assert sf.info(os.fsencode(tmp_path / f"{name}.flac")).frames == 3200


def test_codes_written_under_an_audio_suffix_get_a_warning(tiny_model, tmp_path):
    source = write_audio(tmp_path / "in.wav", tone(0.2, 16000), 16000, "PCM_16")
    _, report = encode_file(tiny_model, source, tmp_path / "out.wav")
    assert any("out.wav: holds codes, not audio" in warning for warning in report.warnings)
    _, report = encode_file(tiny_model, source, tmp_path / "out.codes")
    assert not report.warnings
    encode_file(tiny_model, source, tmp_path / "out.wav", force=True)   # codes under that name before: replaced
    other = write_audio(tmp_path / "other.wav", tone(0.2, 16000), 16000, "PCM_16")
    before = other.read_bytes()
    with pytest.raises(CodecError, match="other.wav: is an audio file, which encoding would replace with codes"):
        encode_file(tiny_model, source, other, force=True)
    # audio by its header under another name, and by its name behind a symbolic link
    (tmp_path / "take2").write_bytes(before)
    (tmp_path / "link.codes").symlink_to(other)
    for disguised in (tmp_path / "take2", tmp_path / "link.codes"):
        with pytest.raises(CodecError, match=f"{disguised.name}: is an audio file"):
            encode_file(tiny_model, source, disguised, force=True)
    assert other.read_bytes() == before and (tmp_path / "take2").read_bytes() == before
    (tmp_path / "junk.codes").write_bytes(b"not codes, not audio")   # neither: --force replaces it
    encode_file(tiny_model, source, tmp_path / "junk.codes", force=True)


def test_an_audio_file_at_500_hz_is_refused_by_name(tiny_model, tmp_path):
    path = write_audio(tmp_path / "slow.wav", np.zeros((500, 1)), 500, "PCM_16")
    with pytest.raises(CodecError, match="slow.wav: sample rate 500 Hz is not supported"):
        encode_file(tiny_model, path, tmp_path / "slow.codes")


def test_unsupported_bitrate(tiny_model):
    with pytest.raises(CodecError, match="not supported"):
        encode_audio(tiny_model, tone(0.1, 16000), 16000, 5.0)


@pytest.mark.parametrize("suffix,subtype", [(".wav", "PCM_16"), (".wav", "PCM_24"), (".wav", "PCM_32"),
                                            (".wav", "FLOAT"), (".wav", "DOUBLE"), (".flac", "PCM_16"),
                                            (".ogg", "VORBIS")])
def test_file_formats(tiny_model, tmp_path, suffix, subtype):
    source = write_audio(tmp_path / f"in{suffix}", tone(0.5, 22050, channels=2), 22050, subtype)
    encode_file(tiny_model, source, tmp_path / "x.codes")
    decode_file(tiny_model, tmp_path / "x.codes", tmp_path / f"out{suffix}")
    info_in, info_out = sf.info(str(source)), sf.info(str(tmp_path / f"out{suffix}"))
    assert (info_out.samplerate, info_out.channels, info_out.frames) == (22050, 2, info_in.frames)


@pytest.mark.parametrize("subtype", ["GSM610", "G721_32", "NMS_ADPCM_16"])
def test_telephony_formats_that_libsndfile_cannot_seek_in(tiny_model, tmp_path, subtype):
    # (reading asked libsndfile where it was, which it cannot say in these: an internal error)
    source = write_audio(tmp_path / "in.wav", tone(0.5, 8000), 8000, subtype)
    encode_file(tiny_model, source, tmp_path / "x.codes")
    decode_file(tiny_model, tmp_path / "x.codes", tmp_path / "out.wav")
    assert sf.info(str(tmp_path / "out.wav")).frames == sf.info(str(source)).frames


@pytest.mark.parametrize("suffix,subtype,step", [(".wav", "PCM_16", 2 ** -15), (".flac", "PCM_24", 2 ** -23),
                                                 (".wav", "PCM_32", 2 ** -31)])
def test_integer_pcm_is_written_rounded_to_the_nearest_step(tmp_path, suffix, subtype, step):
    # (libsndfile 1.2 floors: a decoded -1e-9 was written as -1 in 16 bits, silence read -94 dBFS)
    from codec.audio import write_samples

    samples = np.array([-1e-12, 0.4 * step, 0.6 * step, -0.4 * step, -0.6 * step, 0.25, 1.0, -1.0])[:, None]
    with sf.SoundFile(str(tmp_path / f"x{suffix}"), "w", 16000, 1, subtype) as sink:
        write_samples(sink, samples)
    back, _ = sf.read(str(tmp_path / f"x{suffix}"))
    expected = [0, 0, step, 0, -step, 0.25, 1.0 - step, -1.0]
    np.testing.assert_allclose(back, expected, rtol=0, atol=step / 1000)


def test_audio_after_an_unfinished_wav_header_is_warned_of(tiny_model, tmp_path):
    """A recorder that stopped before writing its header's sizes leaves a data size of 0 with the
    audio after it: libsndfile reads 0 samples, and the file was coded as empty, silently."""
    import struct

    pcm = (tone(0.5, 16000)[:, 0] * 32767).astype("<i2").tobytes()
    header = b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16) + b"data" + struct.pack("<I", 0)
    (tmp_path / "unfinished.wav").write_bytes(b"RIFF" + struct.pack("<I", 36) + header + pcm)
    _, report = encode_file(tiny_model, tmp_path / "unfinished.wav", tmp_path / "x.codes")
    assert [w.split(": ", 1)[1] for w in report.warnings] == [
        f"{len(pcm)} bytes follow the 0 samples its header announces and are no WAV chunk: most likely audio whose "
        f"header was never finished (a recording that stopped); coded the announced samples only (to code the "
        f"rest, repair the header first, e.g. ffmpeg -i IN.wav OUT.wav)"]
    write_audio(tmp_path / "whole.wav", tone(0.5, 16000), 16000)   # a whole file: no warning
    assert encode_file(tiny_model, tmp_path / "whole.wav", tmp_path / "y.codes")[1].warnings == []


def test_integer_formats_read_alike(tmp_path):
    audio = tone(0.1, 16000)
    reads = [load_audio(write_audio(tmp_path / f"{s}.wav", audio, 16000, s))[0]
             for s in ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")]
    for other in reads[1:]:
        np.testing.assert_allclose(other, reads[0], atol=1 / 32768)


def test_refuses_to_overwrite(tiny_model, tmp_path):
    source = write_audio(tmp_path / "in.wav", tone(0.1, 16000), 16000)
    target = tmp_path / "x.codes"
    target.write_bytes(b"precious")
    with pytest.raises(CodecError, match="--force"):
        encode_file(tiny_model, source, target)
    assert target.read_bytes() == b"precious"
    encode_file(tiny_model, source, target, force=True)
    assert target.read_bytes() != b"precious"


def test_unreadable_input(tiny_model, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    with pytest.raises(CodecError, match="bad.wav: cannot read audio"):
        encode_file(tiny_model, bad, tmp_path / "x.codes")
    assert not (tmp_path / "x.codes").exists()
    source = write_audio(tmp_path / "in.wav", tone(0.3, 16000), 16000)
    encode_file(tiny_model, source, tmp_path / "a.codes")
    (tmp_path / "a.codes").rename(tmp_path / "lie.wav")   # codes under an audio file's name
    for head, kind in [(b"", "a .codes file"), (b"CODS", "a packet stream (codec stream --save)")]:
        (tmp_path / "lie.wav").write_bytes(head + (tmp_path / "lie.wav").read_bytes()[len(head):])
        with pytest.raises(CodecError, match=rf"lie.wav: is {re.escape(kind)}, not audio, whatever its name says; "
                                             r"decode it with codec decode"):
            encode_file(tiny_model, tmp_path / "lie.wav", tmp_path / "x.codes")
    (tmp_path / "lie.wav").rename(tmp_path / "named.codes")   # a name that says so: nothing to contradict
    with pytest.raises(CodecError, match=r"named.codes: is a packet stream \(codec stream --save\), not audio; decode"):
        encode_file(tiny_model, tmp_path / "named.codes", tmp_path / "x.codes")


def test_block_seams_are_exact(tiny_model, monkeypatch):
    """Files are coded 10 s at a time; with 1 s blocks the result must equal one-shot coding."""
    import torch

    import codec.coding

    audio = 0.1 * np.random.default_rng(0).standard_normal((3 * 16000 + 123, 1))
    frames = -(-len(audio) // 320)
    padded = torch.from_numpy(np.pad(audio[:, 0], (0, frames * 320 - len(audio)))).float()[None, None]
    offline_codes = tiny_model.encode(padded, 12)
    offline_audio = tiny_model.decode(offline_codes)[0, 0, :len(audio)].numpy()
    monkeypatch.setattr(codec.coding, "BLOCK_SECONDS", 1.0)
    codes_file = encode_audio(tiny_model, audio, 16000, 6.0)
    np.testing.assert_array_equal(codes_file.codes, offline_codes.numpy())
    decoded, _ = decode_audio(tiny_model, codes_file)
    np.testing.assert_allclose(decoded[:, 0], offline_audio, atol=1e-4)


def test_many_channels_are_coded_in_shorter_blocks(tiny_model, monkeypatch):
    """Memory is bounded by channels x block: a crafted 1024-channel file must not need gigabytes."""
    import codec.coding

    monkeypatch.setattr(codec.coding, "BLOCK_SECONDS", 1.0)   # 1 s of stereo: 0.25 s of 8 channels
    audio = 0.1 * np.random.default_rng(0).standard_normal((2 * 16000, 8))
    sizes, file_decoder = [], codec.coding.file_decoder

    def spied(*args):
        decoder = file_decoder(*args)
        decode = decoder.decode
        decoder.decode = lambda codes: sizes.append(codes.shape) or decode(codes)
        return decoder

    monkeypatch.setattr(codec.coding, "file_decoder", spied)
    codes_file = encode_audio(tiny_model, audio, 16000, 6.0)
    decoded, _ = decode_audio(tiny_model, codes_file)
    assert decoded.shape == audio.shape and len(sizes) == 9   # 100 frames, 12 a step
    assert all(shape[0] == 8 and shape[-1] <= 0.25 * tiny_model.frame_rate for shape in sizes)


def test_python_api_refuses_channels_first_numpy_and_integer_scaled_audio(tiny_model_dir):
    import codec as api

    model = api.load_model(tiny_model_dir)
    noise = 0.1 * np.random.default_rng(0).standard_normal((2, 16000))
    with pytest.raises(CodecError, match=r"\[samples, channels\].*pass audio.T"):
        model.encode(noise, sample_rate=16000)            # [C, T]: 16000 channels, not 2
    with pytest.raises(CodecError, match="outside \\[-1, 1\\]"):
        model.encode(3000 * noise.T, sample_rate=16000)   # int16-scaled floats
    with pytest.raises(CodecError, match="got numpy int16 \\(integer PCM: divide by 32768\\)"):
        model.encode(np.ones(16000, dtype=np.int16), sample_rate=16000)   # read by type, not by value
    with pytest.raises(CodecError, match="must be floats"):
        model.encode(torch.zeros(1, 1, 1600), sample_rate=16000)
    with pytest.raises(CodecError, match="must be a numpy array .* not str"):
        model.encode("hello", sample_rate=16000)
    for rate in (16000.5, True, "fast", None):
        with pytest.raises(CodecError, match="must be a whole number of Hz"):
            model.encode(noise.T, sample_rate=rate)
    with pytest.raises(CodecError, match="decode takes a codec.Codes"):
        model.decode(b"CODS")
    with pytest.raises(CodecError, match="missing.codes: cannot read"):
        api.Codes.load("missing.codes")
    codes = model.encode(noise.T, sample_rate=16000)
    audio, rate = model.decode(codes)
    assert audio.shape == (16000, 2) and rate == 16000


def test_python_api_errors_name_its_arguments_not_the_cli_options(tiny_model_dir, tmp_path):
    import codec as api

    source = write_audio(tmp_path / "in.wav", tone(0.3, 16000), 16000)
    api.encode_file(source, tmp_path / "a.codes", model=tiny_model_dir)
    with pytest.raises(CodecError, match="exists; pass force=True to overwrite it"):
        api.encode_file(source, tmp_path / "a.codes", model=tiny_model_dir)
    api.decode_file(tmp_path / "a.codes", tmp_path / "a.wav", model=tiny_model_dir)
    with pytest.raises(CodecError, match="exists; pass force=True to overwrite it"):
        api.decode_file(tmp_path / "a.codes", tmp_path / "a.wav", model=tiny_model_dir)
    with pytest.raises(CodecError, match="pass model= with the model that encoded them"):
        api.decode_file(tmp_path / "a.codes", tmp_path / "b.wav", model="conv-16k", force=True)
    with pytest.raises(CodecError, match="decode them with codec.load_model of the model that encoded them"):
        api.load_model("conv-16k").decode(api.Codes.load(tmp_path / "a.codes"))
    with pytest.raises(CodecError, match="encode with entropy=False, or with a model that has one \\(model="):
        api.encode_file(source, tmp_path / "e.codes", model=tiny_model_dir, entropy=True)
    with pytest.warns(UserWarning, match="made the file larger: the bytes it adds to the header outweigh"):   # (0.3 s)
        written = api.encode_file(source, tmp_path / "conv.codes", model="conv-16k", entropy=True)
    conv = api.load_model("conv-16k")
    assert written.metadata == api.Codes.load(tmp_path / "conv.codes", model=conv).metadata
    assert written.metadata.entropy_model == "entropy-conv-16k"
    with pytest.raises(CodecError, match=r"entropy-coded with model 'entropy-conv-16k': pass "
                                         r"model=codec.load_model\('conv-16k'\)"):
        api.Codes.load(tmp_path / "conv.codes")
    assert api.Codes.load(tmp_path / "conv.codes", model=conv).codes.shape[1] == 12


def test_codes_objects_take_models_by_name_and_any_bytes(tiny_model_dir, tmp_path):
    import codec as api

    conv = api.load_model("conv-16k")
    codes = conv.encode(tone(0.5, 16000), 16000, bitrate="6")          # a number as text will do
    coded = codes.to_bytes(conv)                                         # range-coded, as encode_file
    assert api.Codes.from_bytes(coded, conv).metadata.entropy_coded
    assert np.array_equal(api.Codes.from_bytes(memoryview(coded), model="conv-16k").codes, codes.codes)
    assert np.array_equal(api.Codes.from_bytes(bytearray(codes.to_bytes())).codes, codes.codes)
    codes.save(tmp_path / "c.codes", model="conv-16k")
    assert api.Codes.load(tmp_path / "c.codes", model="conv-16k").metadata.entropy_coded
    tiny = api.load_model(tiny_model_dir)
    tiny_codes = tiny.encode(tone(0.5, 16000), 16000)
    audio = write_audio(tmp_path / "in.wav", tone(0.2, 16000), 16000).read_bytes()
    saved = (tmp_path / "c.codes").read_bytes()
    for call, message in [
        (lambda: conv.encode(tone(0.5, 16000), 16000, bitrate="6k"), r"bitrate '6k': must be a number of kbps"),
        (lambda: conv.encode(tone(0.5, 16000), "16000"), r"sample_rate '16000': must be a whole number of Hz"),
        (lambda: api.load_model(tiny_model_dir, int8="no"), r"int8 must be True or False, not 'no'"),
        (lambda: codes.to_bytes(3), r"model must be a codec.Codec \(from codec.load_model\), or a model's name"),
        (lambda: tiny_codes.to_bytes(tiny), r"has no entropy model \(its folder .*\); call to_bytes without model="),
        (lambda: tiny_codes.save(tmp_path / "t.codes", model=tiny),
         r"has no entropy model \(its folder .*\); call save without model="),
        (lambda: tiny_codes.to_bytes(conv), r"made by model 'tiny-16k' .* pass the model that encoded them as model="),
        (lambda: codes.save(tmp_path / "c.codes", model=tiny), r"made by model 'conv-16k'"),
        (lambda: codes.save(tmp_path / "in.wav"), r"in.wav: is an audio file, which encoding would replace"),
        (lambda: api.encode_file(tmp_path / "in.wav", tmp_path / "c.codes", model=conv, force="no"),
         r"force must be True or False, not 'no'"),
        (lambda: api.encode_file(tmp_path / "in.wav", tmp_path / "c.codes", model=conv, entropy="no"),
         r"entropy must be True, False or None, not 'no'"),
        (lambda: api.decode_file(tmp_path / "c.codes", tmp_path / "in.wav", force="false"),
         r"force must be True or False, not 'false'"),
        (lambda: api.Codes.from_bytes("CODC"), r"from_bytes takes the bytes of a .codes file, not str"),
        (lambda: api.Codes.load(None), r"path must be a path \(str or pathlib.Path\), not NoneType"),
        (lambda: codes.save(tmp_path / "missing" / "c.codes"), r"missing: no such directory for the output"),
        (lambda: codes.save(tmp_path), r"is a directory; give a file name"),
        (lambda: codes.save(tmp_path / "fifo"), r"fifo: is not a regular file \(a device, pipe or socket\)"),
    ]:
        if "fifo" in str(message):
            os.mkfifo(tmp_path / "fifo")   # renaming the new file over it would replace it
        with pytest.raises(CodecError, match=message):
            call()
    assert (tmp_path / "fifo").is_fifo()
    (tmp_path / "fifo").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.codes", "in.wav"]
    assert (tmp_path / "c.codes").read_bytes() == saved and (tmp_path / "in.wav").read_bytes() == audio



def test_codes_objects_with_metadata_no_file_can_hold_are_refused(tiny_model_dir, tmp_path):
    """What save would write and load refuse (or decode would turn into NaN) is refused at once."""
    import dataclasses

    import codec as api

    model = api.load_model(tiny_model_dir)
    codes = model.encode(tone(0.3, 16000), 16000)
    for changes, message in [({"gain_db": float("nan")}, r"invalid value of gain_db: nan"),
                             ({"gain_db": 100.0}, r"invalid value of gain_db: 100.0"),
                             ({"gain_db": [1.0, 2.0]}, r"invalid value of gain_db: \[1.0, 2.0\]"),   # 1 channel
                             ({"sample_rate": 0}, r"invalid value of sample_rate: 0"),
                             ({"frame_rate": True}, r"invalid value of frame_rate: True"),
                             ({"weights": "a" * 65}, r"invalid value of weights: 'a{36}\.\.\.\)"),   # 60 kB shown whole
                             ({"entropy_model": "e"}, r"invalid value of entropy_weights: None"),
                             ({"entropy_model": False, "entropy_weights": 0}, r"invalid value of entropy_model: False"),
                             ({"entropy_model": "e", "entropy_weights": []}, r"invalid value of entropy_weights: \[\]"),
                             ({"samples": 16000}, r"16000 samples at 16000 Hz need about 50 frames"),
                             ({"model": "x" * 70000}, r"metadata of \d+ bytes .* holds at most 65535")]:
        wrong = api.Codes(dataclasses.replace(codes.metadata, **changes), codes.codes)
        calls = [wrong.to_bytes, lambda wrong=wrong: wrong.save(tmp_path / "w.codes")]
        if "model" not in changes:   # (decode names the other model first)
            calls.append(lambda wrong=wrong: model.decode(wrong))
        for call in calls:
            with pytest.raises(CodecError, match=message):
                call()
    assert not (tmp_path / "w.codes").exists()


def test_codes_that_disagree_with_their_metadata_are_refused(tiny_model_dir, tmp_path):
    import codec as api

    model = api.load_model(tiny_model_dir)
    codes = model.encode(tone(0.3, 16000), 16000)
    size = codes.metadata.codebook_size
    for bad, message in [(codes.codes + size, rf"codes must be integers in \[0, {size}\)"),
                         (-codes.codes, r"must be integers"), (codes.codes.astype(float), r"must be integers"),
                         (codes.codes[:, :, :3], r"codes of shape \(1, 12, 3\) do not match their metadata's"),
                         (codes.codes[:, :5], r"codes of shape \(1, 5, \d+\) do not match")]:
        wrong = api.Codes(codes.metadata, bad)
        with pytest.raises(CodecError, match=message):
            model.decode(wrong)
        with pytest.raises(CodecError, match=message):
            wrong.to_bytes()


def test_file_functions_name_bad_paths_and_pass_on_the_clis_warnings(tiny_model_dir, tmp_path):
    import warnings

    import codec as api

    source = write_audio(tmp_path / "in.wav", tone(0.3, 16000), 16000)
    for call, message in [(lambda: api.load_model(123), r"name_or_path must be a model's name or folder .* not int"),
                          (lambda: api.load_model(""), r"name_or_path is empty; give a model's name or folder"),
                          (lambda: api.encode_file(source, None), r"output_path must be a path .* not NoneType"),
                          (lambda: api.decode_file(b"a.codes", "a.wav"), r"input_path must be a path .* not bytes"),
                          (lambda: api.encode_file(source, tmp_path / "a.codes", model=""), r"model is empty"),
                          (lambda: api.encode_file(source, tmp_path / "a.codes", model=tiny_model_dir, bitrate="6k"),
                           r"bitrate '6k': must be a number of kbps"),   # as Codec.encode says, not a TypeError
                          (lambda: api.decode_file(tmp_path / "a.codes", "a.wav", model=7),
                           r"model must be a codec.Codec \(from codec.load_model\), or a model's name or folder")]:
        with pytest.raises(CodecError, match=message):
            call()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        api.encode_file(source, tmp_path / "codes.wav", model=tiny_model_dir)
    assert any("holds codes, not audio, whatever its suffix says" in str(w.message) for w in caught)
    loaded = api.load_model(tiny_model_dir)   # a loaded Codec serves as well as its folder
    api.encode_file(source, tmp_path / "loaded.codes", model=loaded)
    api.decode_file(tmp_path / "loaded.codes", tmp_path / "loaded.wav", model=loaded)
    assert (tmp_path / "loaded.codes").read_bytes() == (tmp_path / "codes.wav").read_bytes()


def test_the_api_decodes_to_a_chosen_sample_format_and_names_its_argument_in_warnings(tiny_model_dir, tmp_path,
                                                                                   monkeypatch):
    import codec as api
    import codec.coding

    source = write_audio(tmp_path / "in.wav", tone(0.3, 16000), 16000)
    api.encode_file(source, tmp_path / "a.codes", model=tiny_model_dir)
    api.decode_file(tmp_path / "a.codes", tmp_path / "a.wav", model=tiny_model_dir, sample_format="float")
    assert sf.info(str(tmp_path / "a.wav")).subtype == "FLOAT"
    hot = np.full((10, 1), 2.0, dtype=np.float32)
    monkeypatch.setattr(codec.coding, "decode_blocks", lambda model, codes_file: iter([hot]))
    with pytest.warns(UserWarning, match='clipped \\(float samples keep them: sample_format="float", in .wav'):
        api.decode_file(tmp_path / "a.codes", tmp_path / "b.wav", model=tiny_model_dir)
    # checked before anything else, as the CLI checks --sample-format: before an existing output is named
    for bad, message in [(16, "sample_format must be one of 'pcm16', 'pcm24', 'float' or None, not int"),
                         ("pcm32", "sample format 'pcm32' is not supported")]:
        with pytest.raises(CodecError, match=message):
            api.decode_file(tmp_path / "a.codes", tmp_path / "a.wav", model=tiny_model_dir, sample_format=bad)
    with pytest.raises(CodecError, match="c.flac: FLAC holds integer samples only"):
        api.decode_file(tmp_path / "a.codes", tmp_path / "c.flac", model="no-such-model", sample_format="float")


def test_file_functions_refuse_folder_names_nul_characters_and_names_too_long(tiny_model_dir, tmp_path):
    """As the CLI does: a name ending with / names a folder (a Path would drop the / and write a
    file of the folder's name, over a user's file there); NUL characters and names the file system
    cannot hold are CodecErrors naming the path, not ValueError or OSError."""
    import warnings

    import codec as api

    source = write_audio(tmp_path / "in.wav", tone(0.3, 16000), 16000)
    model = api.load_model(tiny_model_dir)
    codes = api.encode_file(source, tmp_path / "in.codes", model=model)
    (tmp_path / "mine").write_text("mine")
    long_name = str(tmp_path / ("y" * 300))
    for call, message in [
            (lambda: api.encode_file(source, f"{tmp_path}/out/", model=model),
             r"out/: names a folder \(it ends with /\); give a file name such as .*out/in\.codes"),
            (lambda: api.decode_file(tmp_path / "in.codes", f"{tmp_path}/mine/", model=model),
             r"mine/: names a folder .* such as .*mine/in\.wav"),
            (lambda: codes.save(f"{tmp_path}/mine/"), r"mine/: names a folder"),
            (lambda: api.encode_file(tmp_path / "lost.wav", f"{tmp_path}/out/"), r"lost.wav: no such file"),   # first
            (lambda: codes.save("a\0b.codes"), r"path 'a\\x00b.codes' contains a NUL character"),
            (lambda: api.load_model("a\0b"), r"name_or_path .* contains a NUL character"),
            (lambda: api.encode_file(source, "a\0b.codes"), r"output_path .* contains a NUL character"),
            (lambda: codes.save(long_name + ".codes"), r"y\.codes: File name too long"),
            (lambda: api.encode_file(source, long_name + ".codes", model=model), r"File name too long"),
            (lambda: api.encode_file(long_name + ".wav", tmp_path / "b.codes", model=model), r"File name too long"),
            (lambda: api.decode_file(tmp_path / "in.codes", long_name + ".wav", model=model), r"File name too long"),
            (lambda: api.load_model(long_name), r"File name too long"),
            (lambda: api.Codes.load(tmp_path / "in.codes", model=long_name), r"File name too long")]:
        with pytest.raises(CodecError, match=message):
            call()
    assert (tmp_path / "mine").read_text() == "mine"
    assert not (tmp_path / "out").exists()
    with warnings.catch_warnings(record=True) as caught:   # still the caller's line, not one inside codec
        warnings.simplefilter("always")
        api.encode_file(source, tmp_path / "int8.codes", model=model, int8=True)
        codes.save(tmp_path / "codes.wav")
    assert len(caught) == 2 and {w.filename for w in caught} == {__file__}


def test_python_api_input_checks_name_the_slip(tiny_model_dir):
    """A short clip in the other layout, Python lists, None, overshoot, non-finite samples and
    loose flags each get a named error (or a warning), not a misread signal or a numpy message."""
    import array
    import warnings

    import codec as api

    model = api.load_model(tiny_model_dir)
    for call, message in [
        (lambda: model.encode(np.zeros((2, 800)), 16000), r"shape \(2, 800\) would be 800 channels of 2 samples"),
        (lambda: model.encode(torch.zeros(800, 2), 16000), r"would be 800 channels of 2 samples; pass audio.T"),
        (lambda: model.encode(None, 16000), r"audio must be a numpy array .* not NoneType"),
        (lambda: model.encode(["a", "b"], 16000), r"audio as a list must hold numbers"),
        (lambda: model.encode(np.array([0.0, np.inf]), 16000), r"NaN or infinite samples"),
        (lambda: model.encode(np.full(1600, 300.0), 16000), r"samples reach 300, far outside \[-1, 1\]"),
        (lambda: model.encode(np.array([None, 1.0]), 16000), r"numpy reads a ndarray as Python objects"),
        (lambda: model.encode((x for x in [0.1]), 16000), r"numpy reads a generator as Python objects"),
        (lambda: model.encode(np.full(1600, 256.0001), 16000), r"samples reach 256.0001, far outside"),
        (lambda: model.encode(torch.zeros(100, device="meta"), 16000), r"a dense tensor .*, got a meta tensor"),
        (lambda: model.encode(torch.zeros(2, 100).to_sparse(), 16000), r"got a sparse_coo tensor"),
        (lambda: model.encode(torch.zeros(0, 100), 16000), r"shape \(0, 100\) has no channels"),
        (lambda: model.encode(np.zeros((2000, 1025)), 16000),
         r"1025 channels \(at most 1024\); nor is it audio the other way round \(2000 channels"),
        (lambda: api.Codec("tiny-16k"), r"Codec wraps a loaded codec network, not str; .*"
         r"codec.load_model\('tiny-16k'\)"),
        (lambda: model.encode(np.zeros(1600), 16000, refine_steps=None), r"refinement steps must be a whole"),
        (lambda: model.decode(model.encode(np.zeros(1600), 16000), tensor="no"), r"tensor must be True or False"),
    ]:
        with pytest.raises(CodecError, match=message):
            call()
    listed = model.encode([0, 1, 0, -1] * 400, 16000)   # Python ints in a list are floats here
    assert listed == model.encode(np.array([0.0, 1.0, 0.0, -1.0] * 400), 16000)
    assert model.encode(np.zeros((0, 2)), 16000).metadata.channels == 2   # no samples: any layout is empty
    assert model.encode(np.zeros((1, 2)), 16000).metadata.channels == 2   # a stream's last one-sample block
    assert model.encode(array.array("f", [0.1] * 1600), 16000) == model.encode(np.full(1600, np.float32(0.1)), 16000)
    square = np.sign(np.sin(np.arange(1600) / 8.0)) * 0.999
    decoded, _ = model.decode(model.encode(square, 16000))
    overshoot = np.concatenate([decoded[:, 0], [1.5]])   # what a codec gives back, a little beyond ±1
    with pytest.warns(UserWarning, match=r"sample was beyond ±1.0 full scale \(peak 1.5\) and was limited"):
        clipped = model.encode(overshoot, 16000)
    assert clipped == model.encode(np.clip(overshoot, -1, 1), 16000)
    with pytest.warns(UserWarning, match=r"2 samples were beyond ±1.0 full scale \(peak 10\)"):
        model.encode(np.array([10.0, -5.0] + [0.0] * 1600), 16000)   # as a float file peaking at 10 is
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.encode(square, 16000)   # within ±1: no warning


def test_codes_objects_compare_check_their_parts_and_their_model(tiny_model_dir, tmp_path):
    import dataclasses
    import warnings

    import codec as api

    model = api.load_model(tiny_model_dir)
    conv = api.load_model("conv-16k")
    assert model.name == "tiny-16k" and repr(conv) == "<codec.Codec 'conv-16k': 16000 Hz, 1.5, 3, 6, 12 kbps>"
    assert {"Codec", "Codes", "load_model", "encode_file", "decode_file"} <= set(dir(api))
    codes = model.encode(tone(0.3, 16000), 16000)
    assert codes == api.Codes.from_bytes(codes.to_bytes()) and codes != model.encode(tone(0.2, 16000), 16000)
    conv_codes = conv.encode(tone(0.3, 16000), 16000)
    coded = conv_codes.to_bytes(conv)   # entropy-coded: the same codes, however stored
    assert api.Codes.from_bytes(coded, conv) == conv_codes
    for call, message in [
        (lambda: api.Codes(dataclasses.asdict(codes.metadata), codes.codes), r"metadata must be a .*CodesMetadata"),
        (lambda: api.Codes(codes.metadata, codes.codes, np.zeros((1, 2), dtype=np.int64)).to_bytes(),
         r"global codes were given, but the metadata has no global codebooks"),
        (lambda: api.Codes.from_bytes(codes.to_bytes(), model="conv-16k"), r"made by model 'tiny-16k'"),
        (lambda: api.Codes.from_bytes(coded, model), r"made by model 'conv-16k' .* as model="),
        (lambda: api.Codes.from_bytes(codes.to_bytes(), model="no-such-model"), r"no-such-model"),
    ]:
        with pytest.raises(CodecError, match=message):
            call()
    with pytest.warns(UserWarning, match=r"holds codes, not audio"):
        codes.save(tmp_path / "new.wav")
    write_audio(tmp_path / "in.wav", tone(0.3, 16000), 16000)
    with pytest.raises(CodecError, match=r"which encoding would replace with codes; name the output .codes$"):
        codes.save(tmp_path / "in.wav")
    with pytest.raises(CodecError, match=r"which encoding would replace with codes; name the output .codes$"):
        api.encode_file(write_audio(tmp_path / "other.wav", tone(0.2, 16000), 16000), tmp_path / "in.wav",
                        model=model, force=True)   # no CLI hint either
    (tmp_path / "audio.codes").write_bytes((tmp_path / "in.wav").read_bytes())   # audio under a codes name
    with pytest.raises(CodecError, match=r"is an audio file, .*; give the codes another name \(this file holds audio"):
        codes.save(tmp_path / "audio.codes")
    codes.save(tmp_path / "c.codes")
    with pytest.warns(UserWarning, match=r"int8=True is unused with a loaded Codec"):
        api.decode_file(tmp_path / "c.codes", tmp_path / "out.wav", model=model, int8=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        api.decode_file(tmp_path / "c.codes", tmp_path / "out2.wav", model=model)


def test_encoding_a_file_reports_its_progress_block_by_block(tiny_model, tmp_path):
    source = write_audio(tmp_path / "long.wav", tone(25.0, 16000), 16000)
    calls = []
    encode_file(tiny_model, source, tmp_path / "long.codes",
                on_progress=lambda done, total: calls.append((done, total)))
    assert calls == [(160000, 400000), (320000, 400000), (400000, 400000)]   # after each 10-s block


def test_audio_past_4_gib_is_written_as_rf64_and_aiff_refuses_it(tmp_path):
    """A WAV header counts bytes in 32 bits: 10 channels of 48 kHz for 8 minutes claimed a wrapped
    length that every reader cut 41 s short."""
    from pathlib import Path

    from codec.coding import open_sink

    frames = 230_400_000   # x 10 channels x 2 bytes: 4.3 GiB
    with open_sink(tmp_path / "big.tmp", Path("big.wav"), 48000, 10, frames=frames) as sink:
        sink.write(np.zeros((16, 10)))
    assert sf.info(str(tmp_path / "big.tmp")).format == "RF64"
    with open_sink(tmp_path / "small.tmp", Path("small.wav"), 48000, 10, frames=48000) as sink:
        sink.write(np.zeros((16, 10)))
    assert sf.info(str(tmp_path / "small.tmp")).format == "WAV"
    for path, channels, message in [(Path("big.aiff"), 10, r"big.aiff: 4.3 GiB of audio is past AIFF's 4 GiB"),
                                    (Path("wide.wav"), 1025, r"wide.wav: WAV holds at most 1024 channels")]:
        with pytest.raises(CodecError, match=message):
            open_sink(tmp_path / "x.tmp", path, 48000, channels, frames=frames)


def test_a_file_that_is_not_codes_is_refused_by_its_first_bytes_alone(tmp_path):
    """A 2 GB file given as codes took 2.3 GB of memory to refuse by its first four bytes."""
    from codec.codes_files import HEAD_BYTES, codes_bytes
    from codec.coding import read_codes

    junk = tmp_path / "big.codes"
    junk.write_bytes(bytes(3 * HEAD_BYTES))
    assert len(codes_bytes(junk)) == HEAD_BYTES
    with pytest.raises(CodecError, match=r"big.codes: not a .codes file \(wrong magic bytes at offset 0\)"):
        read_codes(junk)
    codes = tmp_path / "long.codes"
    codes.write_bytes(b"CODC" + bytes(2 * HEAD_BYTES))
    assert len(codes_bytes(codes)) == 4 + 2 * HEAD_BYTES


@pytest.mark.parametrize("codebook_size,dtype", [(1024, np.uint16), (1 << 16, np.uint16), ((1 << 16) + 1, np.int64)])
def test_a_files_codes_gather_into_one_growing_array(codebook_size, dtype):
    """As many blocks as a long file has, of uneven lengths (0 included): the same codes as joined
    at the end, held in the smallest type that holds them, returned as int64."""
    from codec.coding import _CodesBuffer

    rng = np.random.default_rng(0)
    blocks = [rng.integers(0, codebook_size, (2, 3, n)) for n in (500, 0, 1, 63, 64, 700, 5, 1500, 2)]
    buffer = _CodesBuffer(codebook_size)
    for block in blocks:
        buffer.append(block)
    assert buffer.array.dtype == dtype
    joined = buffer.codes()
    assert joined.dtype == np.int64 and np.array_equal(joined, np.concatenate(blocks, axis=-1))
