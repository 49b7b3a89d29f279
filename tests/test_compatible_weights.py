"""A decoder retrained on fixed codes keeps reading the .codes files of the weights before it."""

import json
import shutil

import numpy as np
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
    for bad in [{"weights": {"abcdef01": 1}}, {"weights": ["ABCDEF01"]}, [], "[" * 100000]:
        (ship / "compatible_weights.json").write_text(bad if isinstance(bad, str) else json.dumps(bad))
        with pytest.raises(CodecError, match="compatible_weights.json: unreadable"):
            load_model(ship)
    # shipping over the damaged folder replaces it (nothing listed: its codes are unknown)
    assert ship_model(load_model(tiny_model_dir), ship) == []
    assert not (ship / "compatible_weights.json").exists()
    load_model(ship)


def test_esc_codes_depend_on_all_but_the_finest_decoder_stage_and_the_head():
    import dataclasses

    from codec.models import EscCodec
    from tests.test_esc import TINY

    torch.manual_seed(0)
    base = EscCodec(TINY).eval()

    def variant(part: str | None = None, **config):
        other = EscCodec(dataclasses.replace(TINY, **config)).eval()
        other.load_state_dict(base.state_dict(), strict=False)
        if part:
            with torch.no_grad():
                next(other.get_submodule(part).parameters()).add_(0.01)
        return other

    assert makes_same_codes(base, variant("decoder.0"))
    assert makes_same_codes(base, variant("head"))
    # the encoder runs these: the embedding, the merges, the coarser decoder stages and their splits
    for part in ["embed", "merges", "decoder.1", "splits", "encoder", "quantizer"]:
        assert not makes_same_codes(base, variant(part)), part
    # settings that change the codes with the same weights
    assert not makes_same_codes(base, variant(window=TINY.window // 2))
    assert not makes_same_codes(base, variant(name="esc-other"))


def test_an_8_bit_decoder_keeps_the_codes_and_reads_the_16_bit_files(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    ship = tmp_path / "tiny-16k"
    ship_model(load_model(tiny_model_dir), ship)
    first = load_model(ship)
    audio = tone(0.5, 16000)
    old_codes = encode_audio(first, audio, 16000, first.config.bitrates_kbps[-1])
    size_16 = (ship / "model.safetensors").stat().st_size

    assert ship_model(load_model(ship), ship, eight_bit_decoder=True) == [first.weights_sha256[:8]]
    stored = load_file(str(ship / "model.safetensors"))
    eight_bit = {k for k, v in stored.items() if v.dtype == torch.int8}
    assert eight_bit and all(k.startswith(first.decoder_only_weights) for k in eight_bit)
    assert all(f"{k}.scale" in stored for k in eight_bit)
    assert (ship / "model.safetensors").stat().st_size < size_16

    second = load_model(ship)
    assert np.array_equal(encode_audio(second, audio, 16000, first.config.bitrates_kbps[-1]).codes, old_codes.codes)
    before, _ = decode_audio(first, old_codes)
    after, _ = decode_audio(second, old_codes)
    # 8-bit weights move the output a little, not a lot
    assert 0 < float(abs(after - before).max()) < 0.1 * float(abs(before).max())


def test_codes_that_do_not_record_their_weights_are_refused_by_a_saved_model(tiny_model_dir):
    """A crafted or in-memory model's file with an empty weights field could hold any codes."""
    model = load_model(tiny_model_dir)
    codes = encode_audio(model, tone(0.25, 16000), 16000, model.config.bitrates_kbps[-1])
    codes.metadata.weights = ""
    with pytest.raises(CodecError, match=r"weights unrecorded\), but the loaded model"):
        decode_audio(model, codes)
