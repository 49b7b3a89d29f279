"""The input high-pass (codec/highpass.py): what it passes and stops, in blocks as whole, and that
encoding applies it for a model whose config asks for it."""

import numpy as np
import pytest

from codec.coding import encode_audio
from codec.errors import CodecError
from codec.highpass import HighPass
from codec.models import load_model

RATE = 16000


def sine(hz: float, seconds: float = 1.0, rate: int = RATE) -> np.ndarray:
    return np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)[:, None]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x ** 2)))


def test_rumble_is_stopped_and_speech_frequencies_pass():
    for hz, low, high in ((20, 0.0, 0.01), (40, 0.0, 0.07), (1000, 0.99, 1.01), (5000, 0.99, 1.01)):
        out = HighPass(80.0, RATE)(sine(hz, 2.0))
        assert low <= rms(out[RATE:]) / rms(sine(hz, 1.0)) <= high, hz


def test_blocks_give_the_whole_signals_output_for_each_channel():
    rng = np.random.default_rng(0)
    audio = rng.standard_normal((5000, 2)) * [0.1, 0.5] + [0.3, -0.2]
    whole = HighPass(80.0, 44100)(audio)
    blocks, start = HighPass(80.0, 44100), 0
    parts = []
    for size in (1, 7, 0, 1000, 3992):
        parts.append(blocks(audio[start:start + size]))
        start += size
    assert np.allclose(np.concatenate(parts), whole, atol=1e-12)
    assert np.allclose(HighPass(80.0, 44100)(audio[:, 1:]), whole[:, 1:], atol=1e-12)   # channels apart


def test_a_dc_offset_at_the_start_leaves_no_transient():
    out = HighPass(80.0, RATE)(np.full((RATE, 1), 0.5))
    assert np.max(np.abs(out)) < 1e-9


def test_no_filter_without_a_cutoff_or_below_four_times_it():
    audio = np.random.default_rng(1).standard_normal((300, 1))
    assert np.array_equal(HighPass(None, RATE)(audio), audio)
    assert np.array_equal(HighPass(80.0, 320)(audio), audio)


def test_encoding_high_passes_for_a_model_that_asks(tiny_model_dir):
    plain, filtered = load_model(tiny_model_dir), load_model(tiny_model_dir)
    plain.config.input_level_dbfs = filtered.config.input_level_dbfs = -18.0   # measured after the filter
    filtered.config.input_highpass_hz = 80.0
    rng = np.random.default_rng(2)
    audio = 0.1 * rng.standard_normal((RATE, 1)) + 0.3 * sine(25)     # noise over a strong rumble
    codes = encode_audio(filtered, audio, RATE, 6.0).codes
    assert np.array_equal(codes, encode_audio(plain, HighPass(80.0, RATE)(audio), RATE, 6.0).codes)
    assert not np.array_equal(codes, encode_audio(plain, audio, RATE, 6.0).codes)
    assert encode_audio(filtered, audio, RATE, 6.0).metadata.gain_db == \
        encode_audio(plain, HighPass(80.0, RATE)(audio), RATE, 6.0).metadata.gain_db


@pytest.mark.parametrize("cutoff", [0, -80, 5000, True, "80"])
def test_a_cutoff_out_of_range_is_refused_by_name(tiny_model_dir, cutoff):
    from codec.models import build_model

    config = load_model(tiny_model_dir).config
    config.input_highpass_hz = cutoff
    with pytest.raises(CodecError, match="input_highpass_hz=.* is not supported; give a cutoff from 1 to 1000 Hz"):
        build_model(config)


def test_a_file_is_coded_as_the_same_array(tiny_model_dir, tmp_path):
    from codec.coding import encode_file
    from tests.conftest import write_audio

    model = load_model(tiny_model_dir)
    model.config.input_level_dbfs, model.config.input_highpass_hz = -18.0, 80.0
    audio = 0.1 * np.random.default_rng(3).standard_normal((2 * 44100, 1)) + 0.3 * sine(25, 2.0, 44100)
    source = write_audio(tmp_path / "in.wav", audio, 44100, subtype="FLOAT")
    written, _ = encode_file(model, source, tmp_path / "out.codes")
    expected = encode_audio(model, audio.astype(np.float32), 44100, 6.0)
    assert np.array_equal(written.codes, expected.codes) and written.metadata.gain_db == expected.metadata.gain_db
