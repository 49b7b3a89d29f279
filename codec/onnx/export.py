"""ONNX export of a codec as two step graphs with explicit streaming state.

    codec export conv-16k --format onnx --out exported/

writes, for a conv codec, ``encoder.onnx``, ``quantizer_K.onnx`` (one per bitrate), ``decoder.onnx``
and ``codec.json``; for an ESC codec, whose quantizer is interleaved with its encoder stages,
``encoder_K.onnx`` (a whole encoder step, quantizing included, per bitrate: audio -> codes),
``decoder.onnx`` and ``codec.json``. The conv codec's graphs:

* encoder step: ``audio [B, 1, F * frame_size]`` float32 and one input per state tensor ->
  ``latent [B, D, F]`` float32 and the next state tensors;
* ``quantizer_K`` (one per bitrate, no state): ``latent [B, D, F]`` -> ``codes [B, K, F]`` int64.
  Residual quantization is a chain of K lookups, so a graph per K runs only the codebooks a
  bitrate uses (at 6 kbps half of them) instead of all of them;
* decoder step: ``codes [B, num_codebooks, F]`` int64, ``codebook_mask [num_codebooks]`` float32
  (1 for the codebooks in use, 0 for the rest: the bitrate is an input, not a constant) and the
  state tensors -> ``audio [B, 1, F * frame_size]`` (the samples made final by these frames,
  starting ``overlap`` samples before them) and the next state tensors.

Batch ``B`` and frames ``F`` are symbolic axes. Weights are embedded; the model has no weight norm
to fold. ``codec.json`` lists every input and output with its shape and dtype, each state's
shape, the frame size, sample rate, latency, the model's input level (``input_level_dbfs``: the
active level whole-file coding brings input to, null for none; the graphs do not apply it), its
high-pass (``input_highpass_hz``, null for none; not in the graphs either) and the constants the
runtime needs (``codec.onnx.runtime`` drives the graphs frame by frame). The entropy model is not
exported: the graphs take and give plain codes.
"""

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from codec.api import Codec
from codec.atomic import require_utf8_path
from codec.errors import CodecError
from codec.models import ConvCodec
from codec.models.interface import CodecBase
from codec.modules.streaming import start_streaming, stop_streaming, streaming_modules

OPSET = 17
FORMATS = ("onnx",)


def export_format(name: str) -> str:
    """The export format ``name`` stands for, in any case (``ONNX`` is ``onnx``).

    Raises:
        CodecError: for a format that is not exported.
    """
    format = name.strip().lower()
    if format not in FORMATS:
        raise CodecError(f"--format {name!r} is not supported; choose {', '.join(FORMATS)}")
    return format


def _state_fields(parts: nn.Module, batch_size: int) -> list[tuple[str, str, torch.Tensor]]:
    """(module name, field name, initial value) of every state tensor below ``parts``."""
    start_streaming(parts, batch_size)
    fields = [(name, f.name, getattr(module._streaming_state, f.name))
              for name, module in streaming_modules(parts)
              for f in dataclasses.fields(module._streaming_state)]
    stop_streaming(parts)
    return fields


class _Step(nn.Module):
    """Runs ``compute`` with the modules' streaming state taken from, and returned as, tensors."""

    def __init__(self, model: ConvCodec, parts: list[nn.Module]):
        super().__init__()
        self.model = model
        self.parts = nn.ModuleList(parts)
        self.fields = [(name, field) for name, field, _ in _state_fields(self.parts, 1)]

    def _with_state(self, compute, states):
        start_streaming(self.parts, 1)
        modules = dict(streaming_modules(self.parts))
        for (name, field), value in zip(self.fields, states, strict=True):
            setattr(modules[name]._streaming_state, field, value)
        try:
            output = compute()
            return (output, *[getattr(modules[name]._streaming_state, field) for name, field in self.fields])
        finally:
            stop_streaming(self.parts)


class EncoderStep(_Step):
    """Conv codec: audio -> latent (the quantizer graphs take it from there)."""

    def __init__(self, model: ConvCodec):
        super().__init__(model, model.encoder_parts())

    def forward(self, audio: torch.Tensor, *states: torch.Tensor):
        return self._with_state(lambda: self.model.encode_latent(audio), states)


class CodesEncoderStep(_Step):
    """A codec whose quantization has state (ESC: the decoder's coarser stages predict each
    scale): audio -> codes of ``num_codebooks``, one graph per bitrate."""

    def __init__(self, model, num_codebooks: int):
        super().__init__(model, model.encoder_parts())
        self.num_codebooks = num_codebooks

    def forward(self, audio: torch.Tensor, *states: torch.Tensor):
        model = self.model
        return self._with_state(lambda: model.quantize_latent(model.encode_latent(audio), self.num_codebooks), states)


class QuantizerStep(_Step):
    def __init__(self, model: ConvCodec, num_codebooks: int):
        super().__init__(model, [])
        self.num_codebooks = num_codebooks

    def forward(self, latent: torch.Tensor):
        return (self.model.quantizer.encode(latent, self.num_codebooks),)


class DecoderStep(_Step):
    def __init__(self, model: ConvCodec):
        super().__init__(model, model.decoder_parts())

    def forward(self, codes: torch.Tensor, codebook_mask: torch.Tensor, *states: torch.Tensor):
        model = self.model
        return self._with_state(lambda: model.decode_latent(model.dequantize(codes, None, codebook_mask)), states)


def _quantize_weights(path: Path) -> None:
    """Replace ``path`` by its int8-weight version (MatMul weights; activations stay float)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = path.with_suffix(".int8.onnx")
    logging.disable(logging.WARNING)  # its advice to pre-process models for static quantization does not apply
    try:
        quantize_dynamic(path, quantized, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         reduce_range=True)  # 7-bit weights: no int16 saturation on CPUs without VNNI
    finally:
        logging.disable(logging.NOTSET)
    quantized.replace(path)


def _declare_shapes(path: Path, described: list[dict]) -> None:
    """Write the sidecar's shapes into the graph's inputs and outputs: the tracer names the sizes it
    computes (``Concatcodes_dim_1``) where they are fixed, and a reader of the graph should see 24."""
    import onnx

    graph = onnx.load(str(path))
    shapes = {entry["name"]: entry["shape"] for entry in described}
    for value in [*graph.graph.input, *graph.graph.output]:
        dims = value.type.tensor_type.shape.dim
        for dim, size in zip(dims, shapes.get(value.name, []), strict=False):
            if isinstance(size, int):
                dim.dim_value = size
            else:
                dim.dim_param = size
    onnx.save(graph, str(path))


def _describe(name: str, tensor: torch.Tensor, axes: dict[int, str]) -> dict:
    shape = [axes.get(i, size) for i, size in enumerate(tensor.shape)]
    return {"name": name, "shape": shape, "dtype": str(tensor.dtype).removeprefix("torch.")}


def _network_to_export(model) -> CodecBase:
    """``model``'s float network: itself, or a ``codec.Codec``'s.

    Raises:
        CodecError: for an int8-loaded network (quantized layers have no ONNX form; ``int8=True``
            quantizes the exported graphs instead) or anything but a codec network.
    """
    network = model.network if isinstance(model, Codec) else model
    if not isinstance(network, CodecBase):
        example = f"codec.load_model({model!r})" if isinstance(model, (str, Path)) else "codec.load_model(name)"
        raise CodecError(f"export_onnx exports a loaded model, not {type(model).__name__}; load one with {example}")
    if getattr(network, "int8", False):
        raise CodecError(f"{network.config.name} was loaded with int8=True, whose layers have no ONNX form; load "
                         f"it in float32 and export with int8=True (codec export --int8) to quantize the graphs")
    return network


def export_onnx(model: CodecBase | Codec, out_dir: Path | str, example_seconds: float = 1.0,
                int8: bool = False, num_codebooks: int | None = None) -> Path:
    """Export the encoder, quantizer and decoder graphs and their sidecar into ``out_dir``: all
    written to a hidden temporary folder inside it first, then moved in, so that an error, a full
    disk or Ctrl-C leaves ``out_dir`` as it was (an earlier export stays whole).

    ``int8=True`` stores the encoder's and decoder's matrix-multiply weights as 8-bit integers
    (onnxruntime dynamic quantization): a frame's weights stream from memory 4x faster on one
    CPU thread. The quantizer graphs stay float32. Codes from an int8 encoder differ from the
    float model's, mostly in deep codebooks, at unchanged PESQ-WB: at 6 kbps 27% of codes for
    conv-16k and 56% for esc-16k-small (every 4th dev file, 10 files, streamed in 1 s chunks
    against PyTorch streaming, 2026-12-06; ``scripts/bench_streaming.py``; all bitrates in the
    README). Activations are quantized per graph call, so int8 codes also depend on how the audio
    is chunked and batched (``codec.onnx.runtime``'s docstring).

    ``codec.json`` gives the model's ``input_level_dbfs`` and ``input_highpass_hz``, which the graphs
    do not apply: see ``codec.onnx.runtime`` (``OnnxCodec.encode`` / ``decode`` do, as ``codec
    encode`` / ``decode``).

    ``model``: a codec network (``codec.models.load_model``) or a ``codec.Codec``
    (``codec.load_model``), loaded in float32. ``num_codebooks``: export only the graphs that
    stream that many codebooks, one of the model's bitrates' counts (its encoder or quantizer
    graph and the decoder; what ``codec stream`` keeps, in less than half the time for an ESC
    codec); None: every bitrate's.

    Raises:
        CodecError: for anything else (an int8-loaded model, a name: what to pass instead), a model
            with a global code, a ``num_codebooks`` no bitrate of the model has, or naming
            ``out_dir`` if the files cannot be written or its path is not UTF-8 text.
    """
    model = _network_to_export(model)
    counts = sorted({model.codebooks_for_bitrate(kbps) for kbps in model.config.bitrates_kbps})
    if num_codebooks is not None:
        if num_codebooks not in counts:
            raise CodecError(f"num_codebooks {num_codebooks!r}: {model.config.name}'s bitrates code "
                             f"{', '.join(map(str, counts))} codebooks")
        counts = [num_codebooks]
    if model.global_code is not None:
        raise CodecError(f"{model.config.name} has a time-invariant global code; ONNX export supports "
                         f"models without one (use --runtime torch to stream it)")
    out_dir = Path(out_dir)
    require_utf8_path(out_dir, str(out_dir), "the ONNX exporter")
    made = not out_dir.exists()
    staging, finished = None, False
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        # (a read-only out_dir refuses this first: the error names out_dir, not the hidden folder)
        staging = Path(tempfile.mkdtemp(prefix=".export.", suffix=".partial", dir=out_dir))
        for leftover in stale_partial_exports(out_dir):   # (of an export killed outright, SIGKILL)
            shutil.rmtree(leftover, ignore_errors=True)
        _export_into(model, staging, example_seconds, int8, counts)
        for path in sorted(staging.iterdir(), key=lambda p: p.name == "codec.json"):   # the sidecar, naming them, last
            os.replace(path, out_dir / path.name)
        finished = True
    except OSError as error:
        raise CodecError(f"{out_dir}: cannot write the export ({error.strerror or error})") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if made and not finished:   # a failed or interrupted export leaves no folder it made behind
            shutil.rmtree(out_dir, ignore_errors=True)
    return out_dir


STALE_SECONDS = 3600   # a hidden staging folder this old was left by an export killed outright


def stale_partial_exports(out_dir: Path) -> list[Path]:
    """The hidden staging folders in ``out_dir`` that exports killed outright (SIGKILL) left: an
    hour old or more (a younger one may be another export's, still running)."""
    now = time.time()
    stale = []
    for path in out_dir.glob(".export.*.partial"):
        try:
            if path.is_dir() and now - path.stat().st_mtime >= STALE_SECONDS:
                stale.append(path)
        except OSError:
            pass
    return stale


def _export_into(model: ConvCodec, out_dir: Path, example_seconds: float, int8: bool, counts: list[int]) -> None:
    """``export_onnx``'s files, written into the empty folder ``out_dir``: the graphs for ``counts``
    codebooks."""
    model = model.eval()
    frames = max(1, int(example_seconds * model.frame_rate))
    sidecar = {"model": model.config.name, "weights_sha256": getattr(model, "weights_sha256", ""),
               "sample_rate": model.sample_rate, "frame_size": model.frame_size, "frame_rate": model.frame_rate,
               "latency_samples": model.latency, "num_codebooks": model.num_codebooks,
               "codebook_size": model.codebook_size, "bitrates_kbps": model.config.bitrates_kbps,
               "overlap": model.head.istft.overlap, "envelope_floor": model.head.istft.envelope_floor,
               # the active speech level (dBFS, codec.level) that whole-file coding brings input to,
               # None for a model that codes input as it comes; the graphs do not apply it
               "input_level_dbfs": model.config.input_level_dbfs,
               "input_highpass_hz": model.config.input_highpass_hz,
               "opset": OPSET, "weights": "int8" if int8 else "float32", "graphs": {}}
    audio = torch.zeros(1, 1, frames * model.frame_size)
    latent = torch.zeros(1, model.latent_channels, frames)
    codes = torch.zeros(1, model.num_codebooks, frames, dtype=torch.long)
    mask = torch.ones(model.num_codebooks)
    if isinstance(model, ConvCodec):   # stateless quantizer: one encoder, one small graph per bitrate
        graphs = [("encoder", EncoderStep(model), [("audio", audio)], "latent")]
        graphs += [(f"quantizer_{k}", QuantizerStep(model, k), [("latent", latent)], "codes") for k in counts]
    else:
        graphs = [(f"encoder_{k}", CodesEncoderStep(model, k), [("audio", audio)], "codes") for k in counts]
    graphs += [("decoder", DecoderStep(model), [("codes", codes), ("codebook_mask", mask)], "audio")]
    for graph, step, inputs, main_output in graphs:
        states = _state_fields(step.parts, 1)
        state_names = [f"state.{module}.{field}" for module, field, _ in states]
        state_values = [value for _, _, value in states]
        with torch.no_grad():
            outputs = step(*[v for _, v in inputs], *state_values)
        output_names = [main_output] + [f"next_{n}" for n in state_names]
        dynamic = {name: {0: "batch"} for name in state_names + output_names[1:]}
        for name in (inputs[0][0], main_output):
            dynamic[name] = {0: "batch", 2: "samples" if name == "audio" else "frames"}
        path = out_dir / f"{graph}.onnx"
        with warnings.catch_warnings():  # the tracer notes the input-length checks, which hold by construction
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # strided slices of the ESC codec's sub-bands cannot be constant-folded; they run as ops
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
            torch.onnx.export(step, tuple(v for _, v in inputs) + tuple(state_values), str(path),
                              input_names=[n for n, _ in inputs] + state_names, output_names=output_names,
                              dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
        if int8 and not graph.startswith("quantizer_"):
            _quantize_weights(path)
        sidecar["graphs"][graph] = {
            "file": path.name,
            "inputs": [_describe(n, v, dynamic.get(n, {})) for n, v in inputs]
            + [_describe(n, v, dynamic[n]) for n, v in zip(state_names, state_values, strict=True)],
            "outputs": [_describe(n, v, dynamic[n]) for n, v in zip(output_names, outputs, strict=True)],
            "states": [{"input": n, "output": f"next_{n}"} for n in state_names],
        }
        _declare_shapes(path, sidecar["graphs"][graph]["inputs"] + sidecar["graphs"][graph]["outputs"])
    (out_dir / "codec.json").write_text(json.dumps(sidecar, indent=2) + "\n")
