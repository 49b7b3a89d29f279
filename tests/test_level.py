"""Input level normalisation: the meter, the gain, its place in the .codes file and in coding."""

import dataclasses
import json
import struct

import numpy as np
import pytest
import soundfile as sf

from codec.band_fill import QuietFloor
from codec.bitstream import BitstreamError, CodesFile, CodesMetadata, from_bytes, to_bytes
from codec.coding import decode_audio, decode_file, encode_audio, encode_file
from codec.errors import CodecError
from codec.level import (
    LevelMeter,
    amplitude,
    check_target_level,
    measure_leveling,
    normalizing_gain_db,
    without_outliers,
)
from codec.models import ConvCodec
from tests.conftest import tone, write_audio


def speech_like(seconds=2.0, rate=16000, amplitude_=0.1, seed=0) -> np.ndarray:
    """``[T, 1]``: noise bursts in the first half of each 0.4 s, silence in the second."""
    rng = np.random.default_rng(seed)
    audio = rng.standard_normal((round(seconds * rate), 1)) * amplitude_
    period = round(0.4 * rate)
    for start in range(period // 2, len(audio), period):
        audio[start:start + period // 2] = 0
    return audio


def test_active_level_ignores_pauses():
    audio = tone(2.0, 16000) * np.tile(np.repeat([1.0, 0.0], 3200), 5)[:, None]   # half tone, half silence
    meter = LevelMeter(16000)
    meter.add(audio)
    assert meter.level_dbfs() == pytest.approx(10 * np.log10(0.5 ** 2 / 2), abs=0.05)   # the tone's power


def test_level_does_not_depend_on_block_sizes():
    audio = speech_like(seconds=3.3, rate=44100)
    whole = LevelMeter(44100)
    whole.add(audio)
    pieces, start = LevelMeter(44100), 0
    for size in np.random.default_rng(1).integers(1, 5000, 200):
        pieces.add(audio[start:start + size])
        start += size
    pieces.add(audio[start:])
    assert pieces.level_dbfs() == pytest.approx(whole.level_dbfs(), abs=1e-9)


def _level(audio, rate=16000):
    meter = LevelMeter(rate)
    meter.add(audio)
    return meter.level_dbfs()


def test_long_silence_low_noise_dc_and_a_silent_channel_leave_the_level_as_it_is():
    speech = speech_like(seconds=4.0)
    alone = _level(speech)
    rng = np.random.default_rng(2)
    assert _level(np.concatenate([speech, np.zeros((120 * 16000, 1))])) == pytest.approx(alone, abs=0.1)
    hum = 1e-4 * rng.standard_normal((120 * 16000, 1))            # a noise floor 60 dB down
    assert _level(np.concatenate([speech, hum])) == pytest.approx(alone, abs=0.5)
    assert _level(speech + 0.3) == pytest.approx(alone, abs=0.1)   # a DC offset
    assert _level(np.concatenate([speech, np.zeros_like(speech)], axis=1)) == pytest.approx(alone, abs=0.01)


def test_a_click_is_not_taken_for_speech():
    """A 0.9 full-scale click in speech 50 dB down: the speech still lands within 5 dB of the
    target (a mean over the click's frame alone would put it 24 dB below)."""
    quiet = speech_like(seconds=6.0, amplitude_=0.003)
    clicked = quiet.copy()
    clicked[16000] = 0.9
    assert _level(quiet) <= _level(clicked) < _level(quiet) + 5


@pytest.mark.parametrize("highpass_hz", [None, 80.0])
def test_a_wild_sample_beyond_full_scale_does_not_set_the_gain(highpass_hz):
    """One sample at 200 in a float file (in a burst, or in a pause) counts as a loud sample, not as
    a frame 46 dB over full scale (which set the gain 22 dB too low), also where the high-pass
    would smear it over the samples after it; a whole signal beyond full scale keeps its level,
    and a signal within full scale is measured as it is."""
    def gain(audio):
        return measure_leveling([audio], 16000, -18.0, highpass_hz).gain_db

    speech = speech_like(seconds=3.4)
    for at in (round(0.1 * 16000), round(0.3 * 16000)):   # in a burst, in a pause
        wild = speech.copy()
        wild[at] = 200.0
        assert gain(wild) == pytest.approx(gain(speech), abs=0.5)
        assert gain(wild) - gain(np.clip(wild, -1, 1)) == pytest.approx(0, abs=0.2)
    # in a part-frame at the end (a tail of 2: its own median is half the wild sample), as at full scale
    for at in (-1, -2):
        wild = speech[:320 * 160 + 2].copy()
        wild[at] = 200.0
        assert gain(wild) == pytest.approx(gain(np.clip(wild, -1, 1)), abs=0.05)
    assert gain(speech * 100) == pytest.approx(gain(speech) - 40, abs=0.02)
    np.testing.assert_array_equal(without_outliers(speech, 16000), speech)


def test_silence_and_no_samples_get_no_gain():
    meter = LevelMeter(16000)
    assert meter.level_dbfs() is None
    meter.add(np.zeros((16000, 2)))
    assert meter.level_dbfs() is None
    assert normalizing_gain_db(None, -18.0) == 0.0
    assert measure_leveling([np.zeros((100, 1))], 16000, -18.0).gain_db == 0.0


def test_gain_is_rounded_and_limited():
    assert normalizing_gain_db(-31.234, -18.0) == 13.23
    assert normalizing_gain_db(-95.0, -18.0) == 60.0
    assert normalizing_gain_db(3.0, -60.0) == -60.0
    assert measure_leveling([speech_like() + 0.1], 16000, None).gain_db == 0.0    # a model that does not
    assert measure_leveling([speech_like() + 0.1], 16000, None)(np.ones((2, 1))).tolist() == [[1], [1]]  # normalise
    assert amplitude(-20.0) == pytest.approx(0.1)


@pytest.mark.parametrize("bad", [5.0, -61.0, True, "loud", float("nan")])
def test_an_unsupported_target_level_is_refused_by_name(bad):
    with pytest.raises(CodecError, match="input_level_dbfs"):
        check_target_level(bad)


def test_a_model_config_with_an_unsupported_level_is_refused(tiny_model):
    config = dataclasses.replace(tiny_model.config, input_level_dbfs=12.0)
    with pytest.raises(CodecError, match="input_level_dbfs=12.0"):
        ConvCodec(config)


@pytest.fixture
def leveled_model(tiny_model):
    """The tiny model, normalising its input to -18 dBFS (restored afterwards)."""
    tiny_model.config.input_level_dbfs = -18.0
    yield tiny_model
    tiny_model.config.input_level_dbfs = None


def test_encoding_scales_the_input_and_decoding_undoes_it(leveled_model):
    audio = speech_like(amplitude_=0.003)                       # about -50 dBFS
    leveled = encode_audio(leveled_model, audio, 16000, 6.0)
    gain = leveled.metadata.gain_db
    meter = LevelMeter(16000)
    meter.add(audio)
    assert gain == pytest.approx(-18.0 - meter.level_dbfs(), abs=0.006)
    leveled_model.config.input_level_dbfs = None
    seen = QuietFloor()((audio - audio.mean()) * amplitude(gain))   # what it saw: leveled, over the quiet floor
    plain = encode_audio(leveled_model, seen, 16000, 6.0)
    assert plain.metadata.gain_db is None
    np.testing.assert_array_equal(leveled.codes, plain.codes)
    decoded, _ = decode_audio(leveled_model, leveled)
    unscaled, _ = decode_audio(leveled_model, plain)
    np.testing.assert_allclose(decoded, unscaled * amplitude(-gain), rtol=1e-5, atol=1e-9)


def test_a_dc_offset_is_removed_before_coding(leveled_model):
    audio = speech_like(amplitude_=0.003)
    offset = encode_audio(leveled_model, audio + 0.03, 16000, 6.0)
    np.testing.assert_array_equal(offset.codes, encode_audio(leveled_model, audio, 16000, 6.0).codes)
    decoded, _ = decode_audio(leveled_model, offset)
    assert abs(decoded.mean()) < 0.003                          # the offset is not audio: it stays out


def test_files_and_arrays_get_the_same_gain_and_codes(leveled_model, tmp_path):
    audio = speech_like(seconds=25.0, amplitude_=0.01)          # longer than one 10 s block
    source = write_audio(tmp_path / "quiet.wav", audio, 16000, subtype="FLOAT")
    from_file, _ = encode_file(leveled_model, source, tmp_path / "quiet.codes")
    from_array = encode_audio(leveled_model, audio, 16000, 6.0)
    assert from_file.metadata.gain_db == from_array.metadata.gain_db > 20
    np.testing.assert_array_equal(from_file.codes, from_array.codes)
    assert from_bytes((tmp_path / "quiet.codes").read_bytes()).metadata.gain_db == from_file.metadata.gain_db


def test_float_input_beyond_full_scale_is_scaled_with_the_rest_not_clipped(leveled_model, tmp_path):
    """A float file peaking at ±4 (12 dB over): the level normalisation scales it down whole, so a
    model with an input level codes it unclipped, without a warning; decoding restores its level
    (clipped only where a file is written). Clipped first, it lost 2.3 dB of its level here (and
    0.25 PESQ-WB against the unclipped signal on dev speech, 6 kbps, 2x to 4x over)."""
    import warnings

    from codec.api import Codec

    hot = speech_like(amplitude_=0.1)
    hot *= 4.0 / np.abs(hot).max()
    source = write_audio(tmp_path / "hot.wav", hot, 16000, subtype="FLOAT")
    from_file, report = encode_file(leveled_model, source, tmp_path / "hot.codes")
    assert not any("beyond ±1.0" in warning for warning in report.warnings)
    np.testing.assert_array_equal(from_file.codes, encode_audio(leveled_model, hot, 16000, 6.0).codes)
    clipped = encode_audio(leveled_model, np.clip(hot, -1, 1), 16000, 6.0)
    assert from_file.metadata.gain_db < clipped.metadata.gain_db - 2   # measured on the whole signal
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decoded, _ = Codec(leveled_model).decode(Codec(leveled_model).encode(hot, 16000))

    def decoded_level(audio: np.ndarray) -> float:
        meter = LevelMeter(16000)
        meter.add(audio)
        return meter.level_dbfs()

    # against the same signal 12 dB down (the model sees the same leveled input, up to 0.01 dB)
    within_full_scale = decoded_level(decode_audio(leveled_model, encode_audio(leveled_model, hot / 4, 16000, 6.0))[0])
    assert decoded_level(decoded) - within_full_scale == pytest.approx(12.04, abs=0.3)
    assert decoded_level(decode_audio(leveled_model, clipped)[0]) - within_full_scale < 12.04 - 2
    report = decode_file(leveled_model, tmp_path / "hot.codes", tmp_path / "hot_decoded.wav")
    assert any("decoded samples exceeded ±1.0 and were clipped" in warning for warning in report.warnings)
    # in float, the file keeps the input's level as the in-memory decoding does
    report = decode_file(leveled_model, tmp_path / "hot.codes", tmp_path / "hot_float.wav", sample_format="float")
    assert not report.warnings
    written, _ = sf.read(str(tmp_path / "hot_float.wav"), always_2d=True)
    assert np.abs(written).max() > 1.5
    np.testing.assert_allclose(written, decode_audio(leveled_model, from_file)[0], atol=1e-5)


def test_each_channel_gets_its_own_gain_and_codes_as_it_would_alone(leveled_model):
    left, right = speech_like(amplitude_=0.1), speech_like(amplitude_=0.001, seed=1)   # 40 dB apart
    stereo = encode_audio(leveled_model, np.concatenate([left, right], axis=1), 16000, 6.0)
    alone = [encode_audio(leveled_model, channel, 16000, 6.0) for channel in (left, right)]
    assert stereo.metadata.gain_db == [alone[0].metadata.gain_db, alone[1].metadata.gain_db]
    assert stereo.metadata.gain_db[1] - stereo.metadata.gain_db[0] == pytest.approx(40.0, abs=0.1)
    for channel in range(2):   # coded as each channel alone, then scaled back each by its own gain
        np.testing.assert_array_equal(stereo.codes[channel], alone[channel].codes[0])
        expected = decode_audio(leveled_model, alone[channel])[0][:, 0]   # (batched float sums differ a little)
        np.testing.assert_allclose(decode_audio(leveled_model, stereo)[0][:, channel], expected,
                                   atol=1e-3 * np.abs(expected).max())
    data = to_bytes(stereo)   # the list travels in the file
    assert from_bytes(data).metadata.gain_db == stereo.metadata.gain_db
    same = encode_audio(leveled_model, np.concatenate([left, left], axis=1), 16000, 6.0)
    assert same.metadata.gain_db == alone[0].metadata.gain_db   # one number when the channels share it


def _with_gain(gain_db) -> CodesFile:
    meta = CodesMetadata(model="conv-16k", weights="0123abcd", sample_rate=16000, channels=1, samples=3200,
                         frame_rate=50, codebooks=2, codebook_size=1024, frames=10, gain_db=gain_db)
    return CodesFile(meta, np.zeros((1, 2, 10), dtype=np.int64))


def test_the_gain_travels_in_the_file_under_its_flag():
    data = to_bytes(_with_gain(-7.5))
    assert data[5] == 4
    assert from_bytes(data).metadata.gain_db == -7.5
    assert to_bytes(_with_gain(None))[5] == 0
    assert b"gain" not in to_bytes(_with_gain(None))     # files without a gain are as before


def test_a_gain_flag_without_a_gain_is_refused():
    data = bytearray(to_bytes(_with_gain(None)))
    data[5] = 4
    with pytest.raises(BitstreamError, match="gain flag"):
        from_bytes(bytes(data))


@pytest.mark.parametrize("bad", [61.0, -1e9, "3", True, float("nan"), [1.0, 2.0], [], [float("nan")]])
def test_a_gain_out_of_range_is_corrupt_metadata(bad):
    data = to_bytes(_with_gain(1.0))
    length = struct.unpack_from("<H", data, 6)[0]
    values = json.loads(data[8:8 + length])
    forged = json.dumps({**values, "gain_db": bad}, separators=(",", ":")).encode()
    with pytest.raises(BitstreamError, match="corrupt metadata"):
        from_bytes(data[:6] + struct.pack("<H", len(forged)) + forged + data[8 + length:])


def test_quiet_input_decodes_to_24_bit_pcm(leveled_model, tmp_path):
    """A file raised by 24 dB or more comes back as 24-bit PCM (16-bit rounding would be noise
    close under its restored level); others as 16-bit, and OGG as Vorbis."""
    for name, amplitude_, subtype in (("quiet", 0.001, "PCM_24"), ("normal", 0.1, "PCM_16")):
        write_audio(tmp_path / f"{name}.wav", speech_like(amplitude_=amplitude_), 16000)
        encode_file(leveled_model, tmp_path / f"{name}.wav", tmp_path / f"{name}.codes", 6.0)
        for suffix in ("wav", "flac"):
            decode_file(leveled_model, tmp_path / f"{name}.codes", tmp_path / f"{name}_out.{suffix}")
            assert sf.info(str(tmp_path / f"{name}_out.{suffix}")).subtype == subtype
    decode_file(leveled_model, tmp_path / "quiet.codes", tmp_path / "quiet_out.ogg")
    assert sf.info(str(tmp_path / "quiet_out.ogg")).subtype == "VORBIS"
    original, _ = sf.read(str(tmp_path / "quiet.wav"), always_2d=True)     # as the file path read it
    decoded, _ = decode_audio(leveled_model, encode_audio(leveled_model, original, 16000, 6.0))
    written, _ = sf.read(str(tmp_path / "quiet_out.wav"), always_2d=True)
    np.testing.assert_allclose(written, decoded, atol=2 ** -23)
