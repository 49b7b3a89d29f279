"""ONNX export: step graphs with explicit state, driven frame by frame, match PyTorch streaming."""

import json
import os
import re

import numpy as np
import pytest
import torch

from codec.errors import CodecError
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


def test_onnx_concealment_is_pytorchs(exported, tiny_model):
    """Lost frames before the first one, between frames, and a gap long enough to fade out: the
    graphs' concealment (the mask weighting the codebooks) gives PyTorch's (the latent scaled)."""
    torch.manual_seed(0)
    codes = StreamingEncoder(tiny_model, 6).encode(0.1 * torch.randn(1, 1, 12 * 320))
    pytorch, onnx = StreamingDecoder(tiny_model), OnnxStreamingDecoder(OnnxCodec(exported))
    steps = [("conceal", 2), ("decode", slice(0, 5)), ("conceal", 3), ("decode", slice(5, 10)), ("conceal", 45),
             ("decode", slice(10, 12)), ("flush", None)]
    for step, argument in steps:
        if step == "conceal":
            expected, got = pytorch.conceal(argument), onnx.conceal(argument)
        elif step == "decode":
            expected, got = pytorch.decode(codes[..., argument]), onnx.decode(codes[..., argument].numpy())
        else:
            expected, got = pytorch.flush(), onnx.flush()
        assert got.shape == tuple(expected.shape), step
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-4, err_msg=f"{step} {argument}")


def test_concealment_before_any_audio_is_released(exported):
    late = OnnxStreamingDecoder(OnnxCodec(exported))
    late.to_drop = 10 * 320   # (a model whose first frames release nothing yet)
    assert late.conceal(1).shape == (1, 1, 0)


def test_an_export_for_one_bitrate_holds_its_graphs_only(tiny_model, tmp_path):
    folder = export_onnx(tiny_model, tmp_path / "six", num_codebooks=6)
    assert sorted(json.loads((folder / "codec.json").read_text())["graphs"]) == ["decoder", "encoder", "quantizer_6"]
    with pytest.raises(CodecError, match=r"num_codebooks 5: tiny-16k's bitrates code 3, 6, 12, 24 codebooks"):
        export_onnx(tiny_model, tmp_path / "five", num_codebooks=5)
    assert not (tmp_path / "five").exists()


def test_a_runtime_for_one_bitrate_loads_its_graphs_only(exported):
    runtime = OnnxCodec(exported, num_codebooks=5)
    assert set(runtime.sessions) == {"encoder", "quantizer_6", "decoder"}
    audio = (0.1 * np.random.default_rng(0).standard_normal((1, 1, 5000))).astype(np.float32)
    codes, _ = stream(OnnxStreamingEncoder(runtime, 5), OnnxStreamingDecoder(runtime), audio, 777, np.asarray)
    full = OnnxCodec(exported)
    assert np.array_equal(codes, stream(OnnxStreamingEncoder(full, 5), OnnxStreamingDecoder(full), audio, 777,
                                        np.asarray)[0])
    with pytest.raises(CodecError, match="graph quantizer_12 was not loaded"):
        OnnxStreamingEncoder(runtime, 12)


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
    (lambda rt: OnnxStreamingEncoder(rt, 12).encode(np.full((1, 1, 320), 1e300)), "beyond float32's range (3.4e38)"),
    (lambda rt: OnnxStreamingEncoder(rt, 12).encode(np.zeros((1, 1, 320), np.int16)), "give float samples"),
    (lambda rt: OnnxStreamingDecoder(rt).decode(np.zeros((1, 30, 1), np.int64)), "30 codebooks; this model has 1 to"),
    (lambda rt: OnnxStreamingDecoder(rt).decode(np.full((1, 6, 1), 5000)), "codes range from 5000 to 5000"),
    (lambda rt: OnnxStreamingDecoder(rt).decode([[[1]]]), "codes must be a numpy array, not list"),
    (lambda rt: OnnxStreamingDecoder(rt).conceal(2.5), "frames 2.5: must be a whole number >= 0"),
    (lambda rt: OnnxStreamingDecoder(rt).conceal(2, fade=2.0), "fade must be a number from 0"),   # (a gain of 4)
    (lambda rt: OnnxStreamingDecoder(rt).conceal(2, fade="x"), "fade must be a number from 0"),
    (lambda rt: setattr(OnnxStreamingEncoder(rt, 12), "num_codebooks", 24), "num_codebooks is fixed for an ONNX"),
])
def test_onnx_sessions_check_their_input_as_the_pytorch_ones_do(exported, call, message):
    from codec.errors import CodecError

    with pytest.raises(CodecError, match=re.escape(message)):
        call(OnnxCodec(exported))
    for threads in (0, "2", 1.5):   # onnxruntime takes 0 as every core
        with pytest.raises(CodecError, match=f"threads {threads!r}: must be a whole number >= 1"):
            OnnxCodec(exported, threads=threads)


def test_whole_signal_encode_limits_samples_as_codec_encode_does(exported, tiny_model_dir):
    """Beyond ±1: clipped with a warning; beyond ±256 (int16 PCM cast to float): refused, as
    ``codec.load_model(...).encode`` does; a count beyond the graphs' names their range."""
    import warnings

    import codec
    from codec.errors import CodecError

    runtime = OnnxCodec(exported)
    audio = (0.1 * np.random.default_rng(0).standard_normal((1, 1, 3200))).astype(np.float32)
    for model_encode in (lambda a: runtime.encode(a, 12), lambda a: codec.load_model(tiny_model_dir).encode(
            a[0, 0], sample_rate=16000, bitrate=6)):
        with pytest.raises(CodecError, match=r"far outside \[-1, 1\].*divide by 32768"):
            model_encode(audio * 10000)
        with pytest.warns(UserWarning, match="beyond ±1.0 full scale") as caught:
            model_encode(audio * 20)
        assert caught[0].filename == __file__   # (the warning points at the caller's line)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model_encode(audio)
    with pytest.raises(CodecError, match="100 codebooks asked for; the exported graphs give 1 to 24"):
        runtime.encode(audio, 100)


def test_an_exports_codec_json_given_as_codes_is_named_for_what_it_is(exported, tmp_path):
    from tests.conftest import run_cli

    for command in (("info", exported / "codec.json"), ("decode", exported / "codec.json", tmp_path / "o.wav")):
        result = run_cli(*command)
        assert result.exit_code == 1 and "it is the codec.json of an ONNX export" in result.output, result.output
        assert "OnnxCodec(folder)" in result.output and "model's config.json" not in result.output


def test_a_damaged_export_is_refused_naming_what_is_wrong(exported, tmp_path):
    from codec.errors import CodecError

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for path in exported.iterdir():
        (damaged / path.name).write_bytes(path.read_bytes())
    (damaged / "decoder.onnx").write_bytes((exported / "decoder.onnx").read_bytes()[:1000])   # cut short
    with pytest.raises(CodecError, match=r"cannot load its graph decoder.onnx \(damaged\? export the model again\)"):
        OnnxCodec(damaged)
    sidecar = json.loads((exported / "codec.json").read_text())
    without_overlap = {key: value for key, value in sidecar.items() if key != "overlap"}
    for broken in ({}, [], {**sidecar, "graphs": {"decoder": {}}}, without_overlap):
        (damaged / "codec.json").write_text(json.dumps(broken))
        with pytest.raises(CodecError, match=r"codec.json: not what codec export writes .*; export the model again"):
            OnnxCodec(damaged)


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
    upper = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--format", "ONNX", "--out", str(out), "--force"])
    assert upper.exit_code == 0, upper.output   # the format in any case
    other = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--format", "tflite", "--out", str(tmp_path / "x")])
    assert other.exit_code == 1 and "--format 'tflite' is not supported; choose onnx" in other.output


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


def test_sidecar_gives_the_input_level(exported, leveled_export):
    assert json.loads((exported / "codec.json").read_text())["input_level_dbfs"] is None
    assert OnnxCodec(exported).input_level_dbfs is None
    assert json.loads((leveled_export / "codec.json").read_text())["input_level_dbfs"] == -18.0


@pytest.fixture(scope="module")
def leveled_export(tiny_model, tmp_path_factory):
    """The tiny model exported as a model that normalises its input to -18 dBFS."""
    tiny_model.config.input_level_dbfs = -18.0
    try:
        return export_onnx(tiny_model, tmp_path_factory.mktemp("leveled"))
    finally:
        tiny_model.config.input_level_dbfs = None


def speech_like(seconds: float, dbfs: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    """``[T, C]``: noise bursts (0.2 s of every 0.4 s) at an active level of about ``dbfs``, plus a DC offset."""
    rng = np.random.default_rng(seed)
    audio = rng.standard_normal((int(seconds * 16000), channels)) * 10 ** (dbfs / 20)
    audio *= np.tile(np.repeat([1.0, 0.0], 3200), len(audio) // 6400 + 1)[:len(audio), None]
    return audio + 10 ** ((dbfs - 10) / 20)


def rms_db(audio: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(audio - audio.mean())))


def test_whole_signal_coding_scales_input_beyond_full_scale_for_a_leveled_model(leveled_export):
    """As ``Codec.encode`` does: the gain scales samples beyond ±1 with the rest, unclipped and without a warning."""
    import warnings

    runtime = OnnxCodec(leveled_export)
    audio = np.ascontiguousarray(speech_like(1.0, -18.0).T[:, None, :], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, gain_db = runtime.encode(audio * 20, 12)   # peaks near ±4
    assert np.abs(audio * 20).max() > 2 and gain_db == pytest.approx(runtime.encode(audio, 12)[1] - 26.02, abs=0.02)


def test_whole_signal_coding_normalises_the_level_as_pytorch_does(tiny_model, leveled_export):
    """A model with an input level: ``OnnxCodec.encode`` brings each signal to it and ``decode``
    undoes the gain, as ``codec encode`` / ``decode`` do, so quiet input comes back as quiet as
    PyTorch decodes it (without the gain undone it was 27 dB louder)."""
    from codec.coding import decode_audio, encode_audio

    runtime = OnnxCodec(leveled_export)
    loud, quiet = speech_like(2.3, -18.0), speech_like(2.3, -45.0, channels=2)
    quiet[:, 1] *= 10 ** (-12 / 20)   # channels at different levels get a gain each
    tiny_model.config.input_level_dbfs = -18.0
    try:
        expected = encode_audio(tiny_model, quiet, 16000, 6.0)
        expected_audio, _ = decode_audio(tiny_model, expected)
    finally:
        tiny_model.config.input_level_dbfs = None
    codes, gain_db = runtime.encode(np.ascontiguousarray(quiet.T[:, None, :], dtype=np.float32), 12)
    assert gain_db == pytest.approx(expected.metadata.gain_db, abs=0.01) and len(gain_db) == 2
    assert gain_db[0] == pytest.approx(27.0, abs=1.0) and gain_db[1] == pytest.approx(39.0, abs=1.0)
    assert codes.shape == expected.codes.shape and np.mean(codes != expected.codes) <= 1e-3
    decoded = runtime.decode(codes, gain_db, samples=len(quiet))
    assert decoded.shape == (2, 1, len(quiet))
    # a .codes file's codes and gain decode alike
    from_file = runtime.decode(expected.codes, expected.metadata.gain_db, samples=len(quiet))
    np.testing.assert_allclose(from_file[:, 0].T, expected_audio, atol=1e-4 * np.abs(expected_audio).max())
    # back at the input's level: the model hears the quiet channels as it hears the loud signal
    loud_codes, loud_gain = runtime.encode(np.ascontiguousarray(loud.T[:, None, :], dtype=np.float32), 12)
    assert abs(loud_gain) < 1.0
    loud_out = rms_db(runtime.decode(loud_codes, loud_gain, len(loud))) - rms_db(loud)
    for channel in range(2):
        out = rms_db(decoded[channel, 0]) - rms_db(quiet[:, channel])
        assert out == pytest.approx(loud_out, abs=1.0)
        assert out == pytest.approx(rms_db(expected_audio[:, channel]) - rms_db(quiet[:, channel]), abs=0.1)


def test_whole_signal_coding_without_an_input_level_scales_nothing(exported, tiny_model):
    from codec.coding import decode_audio, encode_audio

    runtime = OnnxCodec(exported)
    audio = speech_like(1.1, -45.0)
    codes, gain_db = runtime.encode(audio.T[:, None, :].astype(np.float32), 6)
    assert gain_db is None and codes.shape == (1, 6, -(-len(audio) // 320))
    expected = encode_audio(tiny_model, audio, 16000, 3.0)
    assert np.mean(codes != expected.codes) <= 1e-3
    decoded = runtime.decode(codes, samples=len(audio))
    np.testing.assert_allclose(decoded[0, 0], decode_audio(tiny_model, expected)[0][:, 0], atol=1e-4)
    assert runtime.decode(codes).shape == (1, 1, codes.shape[-1] * 320)


@pytest.mark.parametrize("call, message", [
    (lambda rt: rt.encode(np.zeros((1, 1, 320), np.float32), 30), "30 codebooks asked for"),
    (lambda rt: rt.encode(np.zeros((1, 1, 320), np.float32), 6, chunk_frames=0), "chunk_frames 0"),
    (lambda rt: rt.encode(np.zeros(320, np.float32), 6), "audio has shape (320,)"),
    (lambda rt: rt.decode(np.zeros((2, 6, 1), np.int64), [1.0, 2.0, 3.0]), "gain_db [1.0, 2.0, 3.0]: give None"),
    (lambda rt: rt.decode(np.zeros((1, 6, 1), np.int64), float("nan")), "gain_db nan"),
    (lambda rt: rt.decode(np.zeros((1, 6, 1), np.int64), "loud"), "gain_db 'loud'"),
    (lambda rt: rt.decode(np.zeros((1, 6, 1), np.int64), "3"), "gain_db '3': give None, one number"),
    (lambda rt: rt.decode(np.zeros((1, 6, 1), np.int64), True), "gain_db True"),
    (lambda rt: rt.decode(np.zeros((1, 6, 2), np.int64), samples=641), "2 frames of codes hold at most 640"),
])
def test_whole_signal_coding_checks_its_input(exported, call, message):
    from codec.errors import CodecError

    with pytest.raises(CodecError, match=re.escape(message)):
        call(OnnxCodec(exported))


def test_exporting_into_a_read_only_folder_names_that_folder(tiny_model, tmp_path, monkeypatch):
    """Not the hidden temporary folder the export writes first. (Tests may run as root, who
    writes anywhere: the refusal is also simulated.)"""
    import errno
    import os

    import codec.onnx.export as export

    out = tmp_path / "mine"
    out.mkdir()

    def read_only(prefix, suffix, dir):
        path = os.path.join(dir, f"{prefix}x1y2z3{suffix}")
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

    monkeypatch.setattr(export.tempfile, "mkdtemp", read_only)
    with pytest.raises(export.CodecError) as error:
        export_onnx(tiny_model, out)
    assert str(error.value) == f"{out}: cannot write the export (Permission denied)"
    assert list(out.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_exporting_into_a_read_only_folder_names_that_folder_for_real(tiny_model, tmp_path):
    from codec.errors import CodecError

    out = tmp_path / "read-only"
    out.mkdir()
    out.chmod(0o555)
    try:
        message = f"{out}: cannot write the export (Permission denied)"
        with pytest.raises(CodecError, match=f"^{re.escape(message)}$"):
            export_onnx(tiny_model, out)
    finally:
        out.chmod(0o755)


@pytest.mark.parametrize("given", ["onnx", "ONNX", "Onnx", " onnx "])
def test_the_export_format_is_named_in_any_case(given):
    from codec.onnx.export import export_format

    assert export_format(given) == "onnx"


def test_an_unknown_export_format_is_refused():
    from codec.errors import CodecError
    from codec.onnx.export import export_format

    with pytest.raises(CodecError, match=re.escape("--format 'tflite' is not supported; choose onnx")):
        export_format("tflite")


@pytest.mark.skipif(os.name != "posix", reason="file names of any bytes are a POSIX file system's")
def test_a_folder_whose_path_is_not_utf8_is_read_and_refused_for_export_by_name(tiny_model, exported, tmp_path):
    import shutil

    from codec.errors import CodecError
    from codec.models import load_model, save_model

    folder = tmp_path / os.fsdecode(b"caf\xe9")   # Latin-1, as an older system may have named it
    try:
        shutil.copytree(exported, folder)
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, (1, 1, 16000)).astype(np.float32)
    codec = OnnxCodec(exported)
    assert np.array_equal(OnnxCodec(folder).encode(audio, 8)[0], codec.encode(audio, 8)[0])
    model_dir = save_model(tiny_model, tmp_path / "model")
    shutil.copytree(model_dir, folder / "model")
    assert load_model(folder / "model").state_dict().keys() == tiny_model.state_dict().keys()
    with pytest.raises(CodecError, match=r"caf.*: the ONNX exporter needs a folder whose path is UTF-8"):
        export_onnx(tiny_model, folder / "new")
    assert not (folder / "new").exists()


def test_whole_signal_encoding_applies_the_models_high_pass_as_codec_encode_does(tiny_model, exported):
    from codec.highpass import HighPass

    tiny_model.config.input_highpass_hz = 80.0
    try:
        assert json.loads((export_onnx(tiny_model, exported.parent / "hp") / "codec.json").read_text())[
            "input_highpass_hz"] == 80.0
    finally:
        tiny_model.config.input_highpass_hz = None
    plain, filtered = OnnxCodec(exported), OnnxCodec(exported)
    filtered.config["input_highpass_hz"] = 80.0
    t = np.arange(16000) / 16000
    audio = (0.1 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 25 * t))[None, None].astype(np.float32)
    prefiltered = HighPass(80.0, 16000)(audio[0].T).T[None].astype(np.float32)
    assert np.array_equal(filtered.encode(audio, 8)[0], plain.encode(prefiltered, 8)[0])
    assert not np.array_equal(filtered.encode(audio, 8)[0], plain.encode(audio, 8)[0])


def test_export_takes_the_python_apis_codec_and_refuses_what_it_cannot_export(tiny_model, exported, tmp_path):
    import copy

    import codec
    from codec.errors import CodecError
    from codec.int8 import quantize_linear_layers

    out = export_onnx(codec.Codec(tiny_model), tmp_path / "from_api")   # a codec.load_model result
    assert json.loads((out / "codec.json").read_text()) == json.loads((exported / "codec.json").read_text())
    with pytest.raises(CodecError, match=re.escape("not str; load one with codec.load_model('conv-16k')")):
        export_onnx("conv-16k", tmp_path / "by_name")
    with pytest.raises(CodecError, match="loaded with int8=True, whose layers have no ONNX form"):
        export_onnx(quantize_linear_layers(copy.deepcopy(tiny_model)), tmp_path / "int8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["from_api"]
    with pytest.raises(CodecError, match="OnnxCodec takes the folder of an export"):
        OnnxCodec(None)
