"""ONNX export: step graphs with explicit state, driven frame by frame, match PyTorch streaming."""

import json
import re

import numpy as np
import pytest
import torch

from codec.onnx.export import export_onnx
from codec.onnx.runtime import OnnxCodec, OnnxStreamingDecoder, OnnxStreamingEncoder
from codec.streaming import StreamingDecoder, StreamingEncoder

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    return export_onnx(tiny_model, tmp_path_factory.mktemp("onnx"), example_seconds=1.0)


def stream(encoder, decoder, audio, block, to_array):
    codes, out = [], []
    for start in range(0, audio.shape[-1], block):
        codes.append(encoder.encode(audio[..., start:start + block]))
        out.append(decoder.decode(codes[-1]))
    codes.append(encoder.flush())
    out += [decoder.decode(codes[-1]), decoder.flush()]
    return np.concatenate([to_array(c) for c in codes], -1), np.concatenate([to_array(o) for o in out], -1)


def test_sidecar_describes_the_graphs(exported, tiny_model):
    sidecar = json.loads((exported / "codec.json").read_text())
    assert sidecar["latency_samples"] == tiny_model.latency and sidecar["frame_size"] == 320
    encoder = sidecar["graphs"]["encoder"]
    assert encoder["inputs"][0] == {"name": "audio", "shape": ["batch", 1, "samples"], "dtype": "float32"}
    assert len(encoder["states"]) == len(encoder["inputs"]) - 1
    assert encoder["outputs"][0]["shape"] == ["batch", tiny_model.config.latent_dim, "frames"]
    quantizer = sidecar["graphs"]["quantizer_6"]
    assert quantizer["states"] == [] and quantizer["outputs"][0]["shape"] == ["batch", 6, "frames"]
    decoder = sidecar["graphs"]["decoder"]
    assert [i["name"] for i in decoder["inputs"][:2]] == ["codes", "codebook_mask"]
    assert decoder["outputs"][0]["shape"] == ["batch", 1, "samples"]

    onnx = pytest.importorskip("onnx")
    for graph in sidecar["graphs"].values():   # the graphs declare the same shapes
        model = onnx.load(str(exported / graph["file"]))
        declared = {value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
                    for value in [*model.graph.input, *model.graph.output]}
        assert {e["name"]: e["shape"] for e in graph["inputs"] + graph["outputs"]} == declared


@pytest.mark.parametrize("seconds", [0.37, 7.3, 60.0])
@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_streaming_matches_pytorch_streaming(exported, tiny_model, seconds, batch):
    torch.manual_seed(0)
    audio = 0.1 * torch.randn(batch, 1, int(seconds * 16000))
    block = 16000 if seconds > 10 else 320 * 3 + 17
    torch_codes, torch_audio = stream(StreamingEncoder(tiny_model, 12, batch), StreamingDecoder(tiny_model, batch),
                                      audio, block, lambda t: t.numpy())
    runtime = OnnxCodec(exported)
    onnx_codes, onnx_audio = stream(OnnxStreamingEncoder(runtime, 12, batch), OnnxStreamingDecoder(runtime, batch),
                                    audio.numpy(), block, np.asarray)
    assert onnx_codes.shape == torch_codes.shape
    mismatch = np.mean(onnx_codes != torch_codes)
    assert mismatch <= 1e-3, f"{mismatch:.2%} of codes differ between runtimes"
    if mismatch == 0:
        np.testing.assert_allclose(onnx_audio, torch_audio, atol=1e-4)
    assert onnx_audio.shape == torch_audio.shape == (batch, 1, -(-audio.shape[-1] // 320) * 320)



def test_flushed_onnx_sessions_start_the_next_stream_afresh(exported):
    runtime = OnnxCodec(exported)
    encoder, decoder = OnnxStreamingEncoder(runtime, 12), OnnxStreamingDecoder(runtime)
    audio = (0.1 * np.random.default_rng(0).standard_normal((1, 1, 5000))).astype(np.float32)
    first, second = (stream(encoder, decoder, audio, 777, np.asarray) for _ in range(2))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])


@pytest.mark.parametrize("call, message", [
    (lambda rt: OnnxStreamingEncoder(rt, 0), "num_codebooks 0: must be a whole number >= 1"),
    (lambda rt: OnnxStreamingDecoder(rt, batch_size=1.5), "batch_size 1.5: must be a whole number"),
    (lambda rt: OnnxStreamingEncoder(rt, 12).encode(np.zeros(320, np.float32)), "audio has shape (320,)"),
    (lambda rt: OnnxStreamingEncoder(rt, 12).encode(np.zeros((2, 1, 320), np.float32)), "batch_size = 1"),
    (lambda rt: OnnxStreamingEncoder(rt, 12).encode(np.full((1, 1, 320), np.nan, np.float32)), "NaN or infinite"),
    (lambda rt: OnnxStreamingEncoder(rt, 12).encode(np.full((1, 1, 320), 1e300)), "NaN or infinite"),
    (lambda rt: OnnxStreamingEncoder(rt, 12).encode(np.zeros((1, 1, 320), np.int16)), "give float samples"),
    (lambda rt: OnnxStreamingDecoder(rt).decode(np.zeros((1, 30, 1), np.int64)), "30 codebooks; this model has 1 to"),
    (lambda rt: OnnxStreamingDecoder(rt).decode(np.full((1, 6, 1), 5000)), "codes range from 5000 to 5000"),
    (lambda rt: OnnxStreamingDecoder(rt).decode([[[1]]]), "codes must be a numpy array, not list"),
    (lambda rt: OnnxStreamingDecoder(rt).conceal(2.5), "frames 2.5: must be a whole number >= 0"),
])
def test_onnx_sessions_check_their_input_as_the_pytorch_ones_do(exported, call, message):
    from codec.errors import CodecError

    with pytest.raises(CodecError, match=re.escape(message)):
        call(OnnxCodec(exported))


def test_export_command(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app

    out = tmp_path / "exported"
    result = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    quantizers = {f"quantizer_{k}.onnx" for k in (3, 6, 12, 24)}
    assert {p.name for p in out.iterdir()} == {"encoder.onnx", "decoder.onnx", "codec.json", *quantizers}
    again = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--out", str(out)])
    assert again.exit_code == 1 and "--force" in again.output


def test_int8_export_decodes_like_the_float_graphs(tiny_model, exported, tmp_path):
    int8 = OnnxCodec(export_onnx(tiny_model, tmp_path / "int8", int8=True))
    assert int8.config["weights"] == "int8"
    assert sorted(p.suffix for p in (tmp_path / "int8").iterdir()).count(".onnx") == 6
    import onnx

    nodes = onnx.load(str(tmp_path / "int8" / "decoder.onnx")).graph.node
    assert "MatMulInteger" in {node.op_type for node in nodes}
    # every weight matrix is int8; the one float product left is the inverse STFT's (its DFT basis stays exact)
    assert [node.name for node in nodes if node.op_type == "MatMul"] == ["/head/istft/MatMul"]
    torch.manual_seed(0)
    audio = 0.1 * torch.randn(1, 1, 16000)
    codes = StreamingEncoder(tiny_model, 12).encode(audio).numpy()
    float_audio = OnnxStreamingDecoder(OnnxCodec(exported)).decode(codes)
    int8_audio = OnnxStreamingDecoder(int8).decode(codes)
    error = np.sqrt(np.mean((int8_audio - float_audio) ** 2) / np.mean(float_audio ** 2))
    assert error < 0.1, f"int8 decoder is {error:.1%} (RMS) away from the float one"


def test_a_failed_export_leaves_the_earlier_one_whole(tiny_model, exported, tmp_path, monkeypatch):
    import errno
    import shutil

    import codec.onnx.export as export

    out = shutil.copytree(exported, tmp_path / "export")
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    real, calls = export._declare_shapes, []

    def disk_full_at_the_second_graph(path, described):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, described)

    monkeypatch.setattr(export, "_declare_shapes", disk_full_at_the_second_graph)
    with pytest.raises(export.CodecError, match=r"export: cannot write the export \(No space left on device\)"):
        export_onnx(tiny_model, out, int8=True)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before   # nothing mixed in
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"] and not list(out.glob(".*"))   # no temporary folder


def test_an_interrupted_export_leaves_no_folder_it_made(tiny_model, tmp_path, monkeypatch):
    import codec.onnx.export as export

    def interrupted(model, out_dir, *args):
        (out_dir / "encoder.onnx").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "_export_into", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(tiny_model, tmp_path / "new" / "exported")
    assert list(tmp_path.iterdir()) == [tmp_path / "new"] and list((tmp_path / "new").iterdir()) == []
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    with pytest.raises(KeyboardInterrupt):
        export_onnx(tiny_model, tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
