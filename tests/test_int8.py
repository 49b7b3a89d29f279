"""--int8: a codec's linear layers computing in int8 (codec/int8.py), for both architectures,
offline and streaming, in the CLI, batches and eval; and what it refuses."""


import numpy as np
import pytest
import torch
from torch import nn

from codec.audio import load_audio
from codec.coding import decode_audio, encode_audio
from codec.errors import CodecError
from codec.evaluation.evaluate import EvalSettings, build_systems
from codec.models import EscCodec, load_model, save_model
from codec.refine import check_refine_steps
from codec.streaming import StreamingDecoder, StreamingEncoder
from tests.conftest import run_cli, tone, write_audio
from tests.test_esc import TINY


@pytest.fixture(scope="module")
def esc_dir(tmp_path_factory):
    torch.manual_seed(0)
    return save_model(EscCodec(TINY).eval(), tmp_path_factory.mktemp("models") / "esc-tiny")


def _linear_kinds(model) -> dict[str, set[str]]:
    """Top-level submodule -> the kinds of linear layers in it ("float", "int8")."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    kinds = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, DynamicInt8Linear)):
            kind = "int8" if isinstance(module, DynamicInt8Linear) else "float"
            kinds.setdefault(name.split(".")[0], set()).add(kind)
    return kinds


@pytest.mark.parametrize("which", ["esc", "conv"])
def test_int8_model_codes_and_decodes_close_to_float(which, esc_dir, tiny_model_dir):
    directory = esc_dir if which == "esc" else tiny_model_dir
    float_model, int8_model = load_model(directory), load_model(directory, int8=True)
    kinds = _linear_kinds(int8_model)
    # every linear layer is int8, except the quantizer's projections (read directly as tensors)
    assert {part: kind for part, kind in kinds.items() if part != "quantizer"} and \
        all(kind == ({"float"} if part == "quantizer" else {"int8"}) for part, kind in kinds.items())
    assert all(kind == {"float"} for kind in _linear_kinds(float_model).values())   # loading alone: float
    assert int8_model.weights_sha256 == float_model.weights_sha256   # the same weights, read by any decoder
    audio = tone(1.0, 16000)
    kbps = float_model.config.bitrates_kbps[-1]
    codes = encode_audio(float_model, audio, 16000, kbps)
    reference, _ = decode_audio(float_model, codes)
    decoded, _ = decode_audio(int8_model, codes)
    error = np.sqrt(np.mean((decoded - reference) ** 2)) / np.sqrt(np.mean(reference ** 2))
    assert 0 < error < 0.15   # int8 arithmetic: not the float output, but close to it
    int8_codes = encode_audio(int8_model, audio, 16000, kbps).codes
    assert int8_codes.shape == codes.codes.shape


def test_int8_streaming_runs(esc_dir):
    """The streaming state is built from an int8 layer (whose weight is a method, not a tensor)."""
    model = load_model(esc_dir, int8=True)
    wav = 0.1 * torch.randn(1, 1, 320 * 12)
    encoder, decoder = StreamingEncoder(model, 4), StreamingDecoder(model)
    codes = torch.cat([encoder.encode(wav[..., :320 * 5]), encoder.encode(wav[..., 320 * 5:]), encoder.flush()], -1)
    assert codes.shape == (1, 4, 12)
    audio = torch.cat([decoder.decode(codes), decoder.flush()], -1)
    assert audio.shape[-1] >= 320 * 12 and torch.isfinite(audio).all()
    assert decoder.decode(codes[..., :0]).dtype == torch.float32


def test_refinement_is_refused_in_int8(esc_dir):
    with pytest.raises(CodecError, match="int8"):
        check_refine_steps(5, load_model(esc_dir, int8=True))


def test_cli_int8_files_are_ordinary(esc_dir, tmp_path):
    source = write_audio(tmp_path / "in.wav", tone(0.6, 16000), 16000)
    encoded = run_cli("encode", source, tmp_path / "a.codes", "--model", esc_dir, "-b", "1.2", "--int8")
    assert encoded.exit_code == 0, encoded.output
    decoded = run_cli("decode", tmp_path / "a.codes", tmp_path / "a.wav", "--model", esc_dir)   # float decoder
    assert decoded.exit_code == 0, decoded.output
    decoded = run_cli("decode", tmp_path / "a.codes", tmp_path / "b.wav", "--model", esc_dir, "--int8")
    assert decoded.exit_code == 0, decoded.output
    assert len(load_audio(tmp_path / "b.wav")[0]) == len(load_audio(source)[0])
    refused = run_cli("encode", source, tmp_path / "c.codes", "--model", esc_dir, "-b", "1.2", "--int8",
                      "--refine-steps", "3")
    assert refused.exit_code == 1 and "int8" in refused.output and not (tmp_path / "c.codes").exists()


def test_cli_int8_batch(esc_dir, tmp_path):
    (tmp_path / "in").mkdir()
    for index in range(2):
        write_audio(tmp_path / "in" / f"{index}.wav", tone(0.4, 16000, 300 + 100 * index), 16000)
    result = run_cli("encode", tmp_path / "in", tmp_path / "codes", "--model", esc_dir, "-b", "1.2", "--int8")
    assert result.exit_code == 0, result.output
    result = run_cli("decode", tmp_path / "codes", tmp_path / "out", "--model", esc_dir, "--int8")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.wav", "1.wav"]


def test_eval_int8_adds_its_own_rows(esc_dir):
    systems, _ = build_systems(EvalSettings(str(esc_dir), [0.6], int8=True))
    labels = [(system.name, system.nominal_kbps) for system in systems]
    assert labels == [("esc-tiny", 0.6), ("esc-tiny+int8", 0.6)]
    assert not any(isinstance(m, nn.Linear) for m in systems[1].model.decoder.modules())
    assert any(isinstance(m, nn.Linear) for m in systems[0].model.decoder.modules())


def test_python_api_int8(esc_dir, tmp_path):
    import codec

    model = codec.load_model(esc_dir, int8=True)
    audio = tone(0.5, 22050)[:, 0]
    decoded, rate = model.decode(model.encode(audio, sample_rate=22050, bitrate=1.2))
    assert decoded.shape == (len(audio), 1) and rate == 22050
    source = write_audio(tmp_path / "in.wav", audio, 22050)
    codec.encode_file(source, tmp_path / "a.codes", bitrate=1.2, model=esc_dir, int8=True)
    codec.decode_file(tmp_path / "a.codes", tmp_path / "a.wav", model=esc_dir, int8=True)
    assert len(load_audio(tmp_path / "a.wav")[0]) == len(audio)


@pytest.mark.parametrize("which", ["esc", "conv"])
def test_int8_channels_are_coded_each_on_its_own(which, esc_dir, tiny_model_dir):
    """int8's activation scale spans a call's input, so a loud second channel must not change the
    first channel's codes or audio: each channel gets its own session."""
    model = load_model(esc_dir if which == "esc" else tiny_model_dir, int8=True)
    assert model.config.input_level_dbfs is None   # no file-wide gain, which the louder channel would set
    kbps = model.config.bitrates_kbps[-1]
    speech = tone(1.0, 16000)
    noise = np.random.default_rng(0).normal(0, 0.7, speech.shape).clip(-1, 1)
    mono = encode_audio(model, speech, 16000, kbps)
    stereo = encode_audio(model, np.concatenate([speech, noise], axis=1), 16000, kbps)
    np.testing.assert_array_equal(stereo.codes[0], mono.codes[0])
    np.testing.assert_array_equal(decode_audio(model, stereo)[0][:, 0], decode_audio(model, mono)[0][:, 0])
