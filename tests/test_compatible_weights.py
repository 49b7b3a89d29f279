"""A decoder retrained on fixed codes keeps reading the .codes files of the weights before it."""

import json
import shutil

import pytest
import torch

from codec.coding import decode_audio, encode_audio
from codec.errors import CodecError
from codec.models import load_model, makes_same_codes, ship_model
from tests.conftest import tone


def _changed(model_dir, part: str):
    """The model in ``model_dir`` with one of ``part``'s weights nudged."""
    model = load_model(model_dir)
    with torch.no_grad():
        next(getattr(model, part).parameters()).add_(0.01)
    return model


def test_decoder_update_reads_earlier_files_and_encoder_update_does_not(tiny_model_dir, tmp_path):
    ship = tmp_path / "tiny-16k"
    assert ship_model(load_model(tiny_model_dir), ship) == []     # shipped in 16 bits, nothing before it
    first = load_model(ship)
    old_codes = encode_audio(first, tone(0.5, 16000), 16000, first.config.bitrates_kbps[-1])

    # decoder-only change: the earlier weights' prefix is listed, their files decode
    assert ship_model(_changed(ship, "decoder"), ship) == [first.weights_sha256[:8]]
    second = load_model(ship)
    assert second.weights_sha256 != first.weights_sha256 and makes_same_codes(first, second)
    decoded, rate = decode_audio(second, old_codes)
    assert rate == 16000 and decoded.shape == (8000, 1)

    # a second decoder change keeps both predecessors
    assert ship_model(_changed(ship, "head"), ship) == [second.weights_sha256[:8], first.weights_sha256[:8]]
    decode_audio(load_model(ship), old_codes)

    # an encoder change makes other codes: nothing listed, the old files are refused
    assert ship_model(_changed(ship, "encoder"), ship) == []
    assert not (ship / "compatible_weights.json").exists()
    with pytest.raises(CodecError, match="made by model 'tiny-16k'"):
        decode_audio(load_model(ship), old_codes)


def test_a_damaged_compatibility_file_is_a_clear_error(tiny_model_dir, tmp_path):
    ship = tmp_path / "tiny-16k"
    shutil.copytree(tiny_model_dir, ship)
    (ship / "compatible_weights.json").write_text(json.dumps({"weights": ["not-hex!"]}))
    with pytest.raises(CodecError, match="compatible_weights.json: unreadable"):
        load_model(ship)
