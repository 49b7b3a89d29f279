"""The ESC transformer codec: shapes per scale, streaming == offline, causality, the shared code
path (sessions, files, CLI, loading by architecture) and training."""

import dataclasses
import io
import json

import numpy as np
import pytest
import torch
from rich.console import Console

from codec.coding import decode_audio, encode_audio
from codec.models import EscCodec, EscCodecConfig, load_model, save_model
from codec.streaming import StreamingDecoder, StreamingEncoder
from codec.train import load_recipe, train
from tests.conftest import REPO, run_cli, tone, write_audio

TINY = EscCodecConfig(name="esc-tiny", subbands=8, dims=[8, 16], encoder_blocks=[1, 1], decoder_blocks=[1, 1],
                      heads=2, window=4, codebooks_per_scale=[2, 2], codebook_size=64, codebook_dim=4,
                      bitrates_kbps=[0.6, 1.2])


# the output head as configured by default (one 640-sample inverse-STFT frame per code frame), and
# a finer one: 4 frames of 320 samples, 80 apart (as recipes/esc_16k_small_head.yaml)
FINE_HEAD = dataclasses.replace(TINY, synthesis_n_fft=320, synthesis_subframes=4)


@pytest.fixture(scope="module", params=[TINY, FINE_HEAD], ids=["head", "fine-head"])
def esc(request):
    torch.manual_seed(0)
    return EscCodec(request.param).eval()


def test_shapes_at_every_scale(esc):
    wav = 0.1 * torch.randn(2, 1, 320 * 7)
    latent = esc.encode_latent(wav)
    widths = [4 * 16, 8 * 8]                                   # coarse (4 tokens x 16), fine (8 x 8)
    assert latent.shape == (2, sum(widths), 7)
    assert esc._tokens(latent[:, :widths[0]], 1).shape == (2, 7, 4, 16)
    assert esc._tokens(latent[:, widths[0]:], 0).shape == (2, 7, 8, 8)
    codes = esc.encode(wav, 4)
    assert codes.shape == (2, 4, 7) and codes.max() < 64
    assert esc.encode(wav, 2).shape == (2, 2, 7)              # the coarsest scale alone
    assert esc.decode(codes).shape == (2, 1, 320 * 7)
    # one code frame plus the inverse STFT's overlap: 320 + (640 - 320), or 320 + (320 - 80)
    assert esc.latency == (640 if esc.config.synthesis_subframes == 1 else 560)
    assert esc.codebooks_for_bitrate(0.6) == 2


@pytest.mark.parametrize("count", [0, 5])
def test_a_codebook_count_the_model_lacks_is_refused(esc, tiny_model, count):
    # slicing the codebooks would quietly code with fewer than asked for
    wav = 0.1 * torch.randn(1, 1, 320 * 2)
    with pytest.raises(ValueError, match=f"num_codebooks {count}: this model has 1 to 4 codebooks"):
        esc.encode(wav, count)
    too_many = tiny_model.num_codebooks + 1
    with pytest.raises(ValueError, match=f"num_codebooks {too_many}: this model has 1 to"):
        tiny_model.encode(torch.zeros(1, 1, tiny_model.frame_size), too_many)
    for not_whole in (2.0, "2", True):   # (2.0 failed in a slice: "slice indices must be integers")
        with pytest.raises(TypeError, match=f"num_codebooks must be a whole number, not {not_whole!r}"):
            esc.encode(wav, not_whole)


@pytest.mark.parametrize("family", ["esc", "tiny_model"])   # ESC, and the conv codec
def test_the_tensor_level_calls_refuse_what_they_cannot_code(family, request):
    """A clear TypeError or ValueError, not one from deep inside torch, and codes beyond the
    model's codebooks are refused, not ignored (ESC read only its own)."""
    model = EscCodec(TINY).eval() if family == "esc" else request.getfixturevalue(family)
    frame, count = model.frame_size, model.num_codebooks
    codes = model.encode(torch.zeros(1, 1, 2 * frame), count)
    for call, error, message in [
            (lambda: model.encode(torch.zeros(1, 1, frame + frame // 2), 1), ValueError,
             rf"shape \(1, 1, {frame + frame // 2}\): encode takes \[B, 1, T\] with T a positive multiple of "
             rf"frame_size \({frame} samples"),
            (lambda: model.encode(torch.zeros(1, 1, 0), 1), ValueError, "a positive multiple"),
            (lambda: model.encode(torch.zeros(1, 2 * frame), 1), ValueError, rf"shape \(1, {2 * frame}\)"),
            (lambda: model.encode(torch.zeros(1, 1, frame, dtype=torch.float64), 1), TypeError,
             "float32 torch tensor .* not a torch.float64 tensor"),
            (lambda: model.encode(np.zeros((1, 1, frame), np.float32), 1), TypeError, "not ndarray"),
            (lambda: model.decode(torch.zeros(1, count + 1, 2, dtype=torch.long)), ValueError,
             rf"shape \(1, {count + 1}, 2\): decode takes \[B, K, F\] with K from 1 to {count} codebooks"),
            (lambda: model.decode(codes[0]), ValueError, "decode takes"),
            (lambda: model.decode(codes[..., :0]), ValueError, r"and F >= 1 frames"),
            (lambda: model.decode(torch.full((1, 1, 2), model.codebook_size)), ValueError,
             rf"codes range from {model.codebook_size} to {model.codebook_size}; this model's codebooks hold "
             rf"codes 0 to {model.codebook_size - 1}"),
            (lambda: model.decode(-codes - 1), ValueError, "codes range from -"),
            (lambda: model.decode(codes.float()), TypeError, "integer torch tensor"),
            (lambda: model.decode(codes.numpy()), TypeError, "not ndarray")]:
        with pytest.raises(error, match=message):
            call()
    assert model.decode(codes.to(torch.int32)).shape == (1, 1, 2 * frame)   # any integer type will do


def test_coarse_codes_do_not_depend_on_the_finer_scales(esc):
    wav = 0.1 * torch.randn(1, 1, 320 * 9)
    assert torch.equal(esc.encode(wav, 4)[:, :2], esc.encode(wav, 2))


@pytest.mark.parametrize("frames_per_chunk", [1, 2, 7, 50])
def test_streaming_equals_offline(esc, frames_per_chunk):
    torch.manual_seed(1)
    wav = 0.1 * torch.randn(2, 1, 320 * 60)
    codes = esc.encode(wav, 4)
    encoder = StreamingEncoder(esc, 4, batch_size=2)
    step = 320 * frames_per_chunk
    chunks = [encoder.encode(wav[..., start:start + step]) for start in range(0, wav.shape[-1], step)]
    assert torch.equal(torch.cat(chunks + [encoder.flush()], dim=-1), codes)
    decoder = StreamingDecoder(esc, batch_size=2)
    decoded = [decoder.decode(codes[..., start:start + frames_per_chunk])
               for start in range(0, codes.shape[-1], frames_per_chunk)]
    decoded = torch.cat(decoded + [decoder.flush()], dim=-1)
    offline = esc.decode(codes)
    torch.testing.assert_close(decoded[..., :offline.shape[-1]], offline, atol=1e-4, rtol=0)


def test_causality(esc):
    torch.manual_seed(2)
    wav = 0.1 * torch.randn(1, 1, 320 * 30)
    longer = torch.cat([wav, torch.randn(1, 1, 320 * 10)], dim=-1)
    assert torch.equal(esc.encode(longer, 4)[..., :30], esc.encode(wav, 4))
    codes = esc.encode(longer, 4)
    changed = codes.clone()
    changed[..., 30:] = (changed[..., 30:] + 1) % 64
    # decoded samples before frame 30 (less the inverse STFT's overlap) do not see later codes
    cut = 320 * 30 - (esc.latency - esc.frame_size)
    torch.testing.assert_close(esc.decode(changed)[..., :cut], esc.decode(codes)[..., :cut])


def test_files_cli_and_loading_by_architecture(esc, tmp_path):
    directory = save_model(esc, tmp_path / "esc-tiny")
    assert json.loads((directory / "config.json").read_text())["architecture"] == "esc"
    loaded = load_model(directory)
    assert isinstance(loaded, EscCodec)
    audio = tone(0.77, 22050, channels=2)
    decoded, rate = decode_audio(loaded, encode_audio(loaded, audio, 22050, 1.2))
    assert decoded.shape == audio.shape and rate == 22050
    source = write_audio(tmp_path / "in.wav", audio, 22050)
    assert run_cli("encode", source, tmp_path / "x.codes", "--model", directory, "-b", "0.6").exit_code == 0
    assert run_cli("decode", tmp_path / "x.codes", tmp_path / "out.wav", "--model", directory).exit_code == 0
    export = run_cli("export", directory, "--out", tmp_path / "onnx")
    assert export.exit_code == 0, export.output


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_streaming_matches_pytorch_streaming(esc, tmp_path, batch):
    pytest.importorskip("onnxruntime")
    from codec.onnx.export import export_onnx
    from codec.onnx.runtime import OnnxCodec, OnnxStreamingDecoder, OnnxStreamingEncoder

    runtime = OnnxCodec(export_onnx(esc, tmp_path / "onnx", example_seconds=1.0))
    assert sorted(runtime.config["graphs"]) == ["decoder", "encoder_2", "encoder_4"]
    torch.manual_seed(3)
    audio = 0.1 * torch.randn(batch, 1, int(2.37 * 16000))   # longer than the 1 s it was exported with
    block = 320 * 3 + 17
    sessions = [(StreamingEncoder(esc, 4, batch), StreamingDecoder(esc, batch), torch.from_numpy, lambda t: t.numpy()),
                (OnnxStreamingEncoder(runtime, 4, batch), OnnxStreamingDecoder(runtime, batch),
                 lambda x: x, np.asarray)]
    results = []
    for encoder, decoder, to_input, to_array in sessions:
        codes, out = [], []
        for start in range(0, audio.shape[-1], block):
            codes.append(to_array(encoder.encode(to_input(audio[..., start:start + block].numpy()))))
            out.append(to_array(decoder.decode(to_input(codes[-1]))))
        codes.append(to_array(encoder.flush()))
        out += [to_array(decoder.decode(to_input(codes[-1]))), to_array(decoder.flush())]
        results.append((np.concatenate(codes, -1), np.concatenate(out, -1)))
    (torch_codes, torch_audio), (onnx_codes, onnx_audio) = results
    assert np.array_equal(onnx_codes, torch_codes)
    np.testing.assert_allclose(onnx_audio, torch_audio, atol=1e-4)


def test_esc_recipe_trains(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    for i in range(3):
        write_audio(folder / f"{i}.wav", tone(1.0, 16000, 150.0 + 60 * i), 16000)
    overrides = [f"model.{k}={json.dumps(v).replace(' ', '')}" for k, v in TINY.to_dict().items()]
    recipe = load_recipe(REPO / "recipes" / "esc_16k.yaml", overrides + [
        f"data.train_dir={folder}", f"run.out_dir={tmp_path / 'run'}", "run.max_steps=3", "run.log_every=1",
        "run.batch_size=2", "loss.codebook_choices=[2,4]", "loss.codebook_probs=[0.5,0.5]", "run.tensorboard=false",
        "loss.quantizer_warmup_steps=2", "loss.vq_gradient=rotation"])
    model = train(recipe)
    assert all(bool(layer.initialized) for layer in model.quantizer.layers)   # from the warmed-up features
    assert all(layer.gradient == "rotation" for layer in model.quantizer.layers)
    log = [json.loads(line) for line in (tmp_path / "run" / "train.log").read_text().splitlines()]
    assert len(log) == 3 and all(np.isfinite(r["loss"]) for r in log)
    assert isinstance(load_model(tmp_path / "run" / "model"), EscCodec)
    # stopped within the warm-up, the model's codebooks are untrained: said so
    log = io.StringIO()
    train(dataclasses.replace(recipe, run=dataclasses.replace(recipe.run, out_dir=str(tmp_path / "short"),
                                                              max_steps=1)), console=Console(file=log, width=300))
    assert "the run stopped within its quantizer warm-up (loss.quantizer_warmup_steps=2)" in log.getvalue()


def test_a_new_head_trained_on_frozen_codes_keeps_the_codes(tmp_path):
    """recipes/esc_16k_small_head.yaml's set-up: a head of another shape starts from scratch
    (run.init_fresh), only the finest decoder stage and the head train (optim.freeze with a dotted
    path), so the codes and the code identity stay those of the starting weights."""
    folder = tmp_path / "audio"
    folder.mkdir()
    for i in range(2):
        write_audio(folder / f"{i}.wav", tone(1.0, 16000, 150.0 + 60 * i), 16000)
    torch.manual_seed(0)
    start = save_model(EscCodec(TINY).eval(), tmp_path / "start")
    overrides = [f"model.{k}={json.dumps(v).replace(' ', '')}" for k, v in FINE_HEAD.to_dict().items()]
    recipe = load_recipe(REPO / "recipes" / "esc_16k_small_head.yaml", overrides + [
        f"data.train_dir={folder}", f"run.out_dir={tmp_path / 'run'}", "run.max_steps=2", "run.batch_size=2",
        "loss.codebook_choices=[2,4]", "loss.codebook_probs=[0.5,0.5]", "run.tensorboard=false",
        f"run.init_from={start}", "optim.freeze=[stft,embed,encoder,merges,quantizer,splits,decoder.1]"])
    train(recipe)
    trained, initial = load_model(tmp_path / "run" / "model"), load_model(start)
    wav = 0.1 * torch.randn(1, 1, 320 * 20)
    assert torch.equal(trained.encode(wav, 4), initial.encode(wav, 4))
    assert trained.code_identity()[0] == initial.code_identity()[0]
    trained_state, initial_state = trained.code_identity()[1], initial.code_identity()[1]
    assert all(torch.equal(trained_state[k], initial_state[k]) for k in initial_state)
    assert not torch.equal(trained.decoder[0][0].mlp[0].weight, initial.decoder[0][0].mlp[0].weight)
    assert trained.head.proj.out_features == 4 * 2 * 161 and trained.latency == 560


def test_freezing_an_unknown_part_is_refused_by_name(tmp_path):
    from codec.errors import CodecError
    from codec.train.trainer import _frozen_modules

    for name in ("decoder.7", "head.proj.weight", ""):
        with pytest.raises(CodecError, match=f"{name!r} not in the model"):
            _frozen_modules(EscCodec(TINY), [name])


def test_init_from_names_what_does_not_fit_and_what_init_fresh_names(tmp_path):
    from rich.console import Console

    from codec.errors import CodecError
    from codec.train.trainer import _load_initial_weights

    console = Console(file=open(tmp_path / "log", "w"), width=400)
    with pytest.raises(CodecError, match=r"head\.proj\.weight is \[642, 64\] there, \[1288, 64\] here.*"
                                         r"run\.init_fresh: \[head\]"):
        _load_initial_weights(EscCodec(FINE_HEAD), EscCodec(TINY), "esc-tiny", console)
    with pytest.raises(CodecError, match="'haed' not in the model"):
        _load_initial_weights(EscCodec(FINE_HEAD), EscCodec(TINY), "esc-tiny", console, ["haed"])
    source, target = EscCodec(TINY), EscCodec(TINY)   # same shapes: a listed part still starts afresh
    _load_initial_weights(target, source, "esc-tiny", console, ["decoder.0"])
    assert torch.equal(target.decoder[1][0].mlp[0].weight, source.decoder[1][0].mlp[0].weight)
    assert not torch.equal(target.decoder[0][0].mlp[0].weight, source.decoder[0][0].mlp[0].weight)
    assert "new parts start from scratch: decoder.0" in (tmp_path / "log").read_text()
    recipe = load_recipe(REPO / "recipes" / "esc_16k.yaml",
                         [f"run.out_dir={tmp_path / 'run'}", "run.init_fresh=[head]"])
    with pytest.raises(CodecError, match="run.init_from is not set"):
        train(recipe)


@pytest.mark.parametrize("subframes, n_fft, problem", [
    (0, 640, "synthesis_subframes=0 must be a positive divisor of hop_length=320"),
    (3, 640, "synthesis_subframes=3"),
    (4, 300, r"synthesis_n_fft=300 must be an even multiple of the synthesis hop \(.* = 80\)"),
    (4, 40, "synthesis_n_fft=40"),
    (64, 15, "synthesis_n_fft=15"),
])
def test_an_output_head_that_does_not_tile_the_frames_is_refused_by_name(subframes, n_fft, problem):
    from codec.errors import CodecError

    with pytest.raises(CodecError, match=problem):
        EscCodec(dataclasses.replace(TINY, synthesis_subframes=subframes, synthesis_n_fft=n_fft))


def test_init_from_keeps_every_trained_codebook_when_a_scale_grows(tmp_path):
    from rich.console import Console

    from codec.train.trainer import _load_initial_weights

    # three scales of different widths (8 x 8, 4 x 24, 2 x 16 channels), codebooks fine to coarse
    config = dataclasses.replace(TINY, dims=[8, 24, 16], encoder_blocks=[1, 1, 1], decoder_blocks=[1, 1, 1],
                                 codebooks_per_scale=[2, 3, 1])
    trained = EscCodec(config)
    for layer in trained.quantizer.layers:
        layer.initialized.fill_(True)
    grown = EscCodec(dataclasses.replace(config, codebooks_per_scale=[2, 3, 2]))   # the coarse scale: 1 -> 2
    _load_initial_weights(grown, trained, "esc-tiny", Console(file=open(tmp_path / "log", "w")))
    coarse, middle, fine = grown.quantizer.scales
    assert [bool(layer.initialized) for layer in coarse.layers] == [True, False]   # the new one starts from data
    assert [bool(layer.initialized) for layer in middle.layers + fine.layers] == [True] * 5
    assert torch.equal(middle.layers[2].codebook, trained.quantizer.scales[1].layers[2].codebook)


def test_init_from_widens_the_lookups_and_keeps_the_codes(tmp_path):
    from rich.console import Console

    from codec.train.trainer import _load_initial_weights

    torch.manual_seed(0)
    trained = EscCodec(TINY).eval()
    wide = EscCodec(dataclasses.replace(TINY, codebook_dim=TINY.codebook_dim * 4)).eval()
    _load_initial_weights(wide, trained, "esc-tiny", Console(file=open(tmp_path / "log", "w")))
    wav = 0.1 * torch.randn(1, 1, 4 * TINY.hop_length)
    with torch.no_grad():
        codes = trained.encode(wav, 4)
        assert torch.equal(wide.encode(wav, 4), codes)
        torch.testing.assert_close(wide.decode(codes), trained.decode(codes))
    assert "widened to 16 dimensions" in (tmp_path / "log").read_text()


def test_entropy_trainer_codes_a_folder_with_an_esc_codec(esc, tmp_path):
    """The entropy model's training codes come from any codec family, offline (GPU path) or
    through ``encode_audio`` (CPU path), the same codes either way."""
    from rich.console import Console

    from codec.train.entropy_trainer import EntropyRecipe, code_folder

    directory = save_model(esc, tmp_path / "esc-tiny")
    audio = tmp_path / "audio"
    audio.mkdir()
    for i, seconds in enumerate((0.51, 0.9)):
        write_audio(audio / f"{i}.wav", tone(seconds, 16000, 250 + 100 * i), 16000)
    recipe = EntropyRecipe.from_dict({"entropy": {"codec": "esc-tiny", "num_codebooks": 4, "codebook_size": 64},
                                      "data": {"codec_model": str(directory), "codebook_choices": [2, 4]}})
    streamed = code_folder(recipe, audio, tmp_path / "a.npz", Console(quiet=True))
    offline = code_folder(recipe, audio, tmp_path / "b.npz", Console(quiet=True), offline=True)
    assert [c.shape[0] for c in streamed] == [esc.num_codebooks] * 2
    for a, b in zip(streamed, offline, strict=True):
        assert a.shape == b.shape and (a != b).mean() < 0.01


def test_the_conv_codec_checks_its_synthesis_window_the_same_way():
    from codec.errors import CodecError
    from codec.models.conv_codec import ConvCodec, ConvCodecConfig

    with pytest.raises(CodecError, match="synthesis_n_fft=300 must be an even multiple of hop_length=160"):
        ConvCodec(ConvCodecConfig(synthesis_n_fft=300))
