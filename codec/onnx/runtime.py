"""Streaming with the exported ONNX graphs in onnxruntime (CPU), frame by frame.

``OnnxStreamingEncoder`` and ``OnnxStreamingDecoder`` behave like ``codec.streaming``'s sessions:
the encoder buffers partial frames and ``flush()`` codes the rest zero-padded; the decoder drops
the stream's first ``overlap`` samples and ``flush()`` returns the last ones. State lives in
numpy arrays owned by the session and goes in and out of the graphs on every call.
"""

import json
from pathlib import Path

import numpy as np

from codec.errors import CodecError
from codec.whole_numbers import whole_number


# The checks of codec.streaming's sessions (same messages), in numpy: this module needs no torch.
def _array(value, what: str, batch_size: int, layout: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise CodecError(f"{what} must be a numpy array, not {type(value).__name__}")
    if value.ndim != 3 or value.shape[0] != batch_size:
        raise CodecError(f"{what} has shape {value.shape}; this session takes {layout} with B = "
                         f"batch_size = {batch_size}")
    return value


def _checked_audio(audio, batch_size: int) -> np.ndarray:
    """``audio [B, 1, n]`` as float32. Raises CodecError for another shape, integers or NaN/inf."""
    audio = _array(audio, "audio", batch_size, "[B, 1, n] (mono; B = channels)")
    if audio.shape[1] != 1:
        raise CodecError(f"audio has shape {audio.shape}: {audio.shape[1]} channels in dimension 1; "
                         f"a session codes [B, 1, n] (give channels as the batch, B = batch_size)")
    if not np.issubdtype(audio.dtype, np.floating):
        raise CodecError(f"audio is {audio.dtype}: give float samples in [-1, 1] (e.g. int16 / 32768)")
    with np.errstate(over="ignore"):   # (float64 beyond float32's range becomes inf: refused below)
        audio = audio.astype(np.float32, copy=False)
    if not np.isfinite(audio).all():
        raise CodecError("audio contains NaN or infinite samples")
    return audio


def _checked_codes(codes, batch_size: int, num_codebooks: int, codebook_size: int) -> np.ndarray:
    """``codes [B, K, f]`` as int64, ``1 <= K <= num_codebooks``, each below ``codebook_size``.
    Raises CodecError naming what is wrong."""
    codes = _array(codes, "codes", batch_size, "[B, K, f]")
    if not np.issubdtype(codes.dtype, np.integer):
        raise CodecError(f"codes are {codes.dtype}: give integer code indices (from OnnxStreamingEncoder.encode)")
    if not 1 <= codes.shape[1] <= num_codebooks:
        raise CodecError(f"codes have {codes.shape[1]} codebooks; this model has 1 to {num_codebooks}")
    if codes.size and (codes.min() < 0 or codes.max() >= codebook_size):
        raise CodecError(f"codes range from {int(codes.min())} to {int(codes.max())}; this model's codebooks "
                         f"hold codes 0 to {codebook_size - 1}")
    return codes.astype(np.int64, copy=False)


class OnnxCodec:
    """The graphs of an exported codec (``codec export --format onnx``): for a conv codec an
    encoder step and one quantizer per bitrate; for ESC one whole encoder step (quantizing
    included) per bitrate; then a decoder step."""

    def __init__(self, directory: Path | str, threads: int = 1):
        import onnxruntime

        directory = Path(directory)
        try:
            self.config = json.loads((directory / "codec.json").read_text())
        except (OSError, ValueError) as error:
            raise CodecError(f"{directory}: not an exported codec ({error})") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.sessions = {
            graph: onnxruntime.InferenceSession(str(directory / spec["file"]), options,
                                                providers=["CPUExecutionProvider"])
            for graph, spec in self.config["graphs"].items()}

    def initial_state(self, graph: str, batch_size: int) -> dict[str, np.ndarray]:
        spec = self.config["graphs"][graph]
        states = {s["input"] for s in spec["states"]}
        return {i["name"]: np.zeros([batch_size if d == "batch" else d for d in i["shape"]], dtype=i["dtype"])
                for i in spec["inputs"] if i["name"] in states}

    def run(self, graph: str, inputs: dict[str, np.ndarray], state: dict[str, np.ndarray]):
        """One step: returns ``(main output, next state)``."""
        spec = self.config["graphs"][graph]
        names = [spec["outputs"][0]["name"]] + [s["output"] for s in spec["states"]]
        results = self.sessions[graph].run(names, {**inputs, **state})
        return results[0], {s["input"]: value for s, value in zip(spec["states"], results[1:], strict=True)}


class OnnxStreamingEncoder:
    """``encode(audio [B, 1, n] float32) -> codes [B, K, f]`` for chunks of any length."""

    def __init__(self, codec: OnnxCodec, num_codebooks: int, batch_size: int = 1):
        """Raises CodecError for ``num_codebooks`` or ``batch_size`` below 1 or more codebooks
        than the exported graphs give."""
        self.codec = codec
        self.num_codebooks = whole_number(num_codebooks, "num_codebooks", 1)
        self.batch_size = whole_number(batch_size, "batch_size", 1)
        self.frame_size = codec.config["frame_size"]
        # the smallest exported graph that gives the codebooks asked for: a quantizer after the
        # shared encoder (conv codec), or a whole encoder per bitrate (ESC)
        graphs = codec.config["graphs"]
        self.kind = "quantizer_" if any(g.startswith("quantizer_") for g in graphs) else "encoder_"
        available = sorted(int(g.removeprefix(self.kind)) for g in graphs if g.startswith(self.kind))
        enough = [k for k in available if k >= num_codebooks]
        if not enough:
            raise CodecError(f"{num_codebooks} codebooks asked for; the exported graphs give "
                             f"{', '.join(map(str, available))}")
        self.graph = f"{self.kind}{enough[0]}"
        self.reset()

    def reset(self) -> None:
        self.state = self.codec.initial_state("encoder" if self.kind == "quantizer_" else self.graph, self.batch_size)
        self.buffer = np.zeros((self.batch_size, 1, 0), dtype=np.float32)

    def encode(self, audio: np.ndarray) -> np.ndarray:
        """Codes ``[B, K, f]`` of the whole frames so far. Raises CodecError for audio that is
        not ``[B, 1, n]`` finite float samples of this session's batch size."""
        audio = np.concatenate([self.buffer, _checked_audio(audio, self.batch_size)], axis=-1)
        whole = audio.shape[-1] // self.frame_size * self.frame_size
        self.buffer = audio[..., whole:]
        if whole == 0:
            return np.zeros((self.batch_size, self.num_codebooks, 0), dtype=np.int64)
        if self.kind == "quantizer_":
            latent, self.state = self.codec.run("encoder", {"audio": audio[..., :whole]}, self.state)
            codes, _ = self.codec.run(self.graph, {"latent": latent}, {})
        else:
            codes, self.state = self.codec.run(self.graph, {"audio": audio[..., :whole]}, self.state)
        return codes[:, :self.num_codebooks]

    def flush(self) -> np.ndarray:
        """Codes of the buffered partial frame, zero-padded; the session is then ready for a new
        stream (as ``StreamingDecoder.flush``)."""
        if self.buffer.shape[-1] == 0:
            codes = np.zeros((self.batch_size, self.num_codebooks, 0), dtype=np.int64)
        else:
            pad = self.frame_size - self.buffer.shape[-1]
            self.buffer = np.pad(self.buffer, ((0, 0), (0, 0), (0, pad)))
            codes = self.encode(np.zeros((self.batch_size, 1, 0), dtype=np.float32))
        self.reset()
        return codes


class OnnxStreamingDecoder:
    """``decode(codes [B, K, f]) -> audio [B, 1, n]``: every sample that is final after them."""

    def __init__(self, codec: OnnxCodec, batch_size: int = 1):
        """Raises CodecError for ``batch_size`` below 1."""
        self.codec, self.batch_size = codec, whole_number(batch_size, "batch_size", 1)
        self.num_codebooks = codec.config["num_codebooks"]
        self.reset()

    def reset(self) -> None:
        self.state = self.codec.initial_state("decoder", self.batch_size)
        self.to_drop = self.codec.config["overlap"]
        self.last_codes = None
        self.gain = 1.0

    def _released(self, audio: np.ndarray) -> np.ndarray:
        drop = min(self.to_drop, audio.shape[-1])
        self.to_drop -= drop
        return audio[..., drop:]

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Audio ``[B, 1, n]`` made final by these codes. Raises CodecError for codes that are not
        ``[B, K, f]`` integer codes of this model."""
        codes = _checked_codes(codes, self.batch_size, self.num_codebooks, self.codec.config["codebook_size"])
        batch, used, frames = codes.shape
        if frames == 0:
            return np.zeros((batch, 1, 0), dtype=np.float32)
        padded = np.zeros((batch, self.num_codebooks, frames), dtype=np.int64)
        padded[:, :used] = codes
        mask = (np.arange(self.num_codebooks) < used).astype(np.float32)
        audio, self.state = self.codec.run("decoder", {"codes": padded, "codebook_mask": mask}, self.state)
        self.last_codes, self.gain = codes[..., -1:], 1.0
        return self._released(audio)

    def conceal(self, frames: int, fade: float = 0.7) -> np.ndarray:
        """Stand-in audio for lost frames: the last received frame repeated, fading by ``fade``
        per frame (the graphs take codes, not latents, so the fade is applied to the audio)."""
        if whole_number(frames, "frames", 0) == 0:
            return np.zeros((self.batch_size, 1, 0), dtype=np.float32)
        if self.last_codes is None:
            self.last_codes = np.zeros((self.batch_size, 1, 1), dtype=np.int64)
        last, gain = self.last_codes, self.gain
        audio = self.decode(np.repeat(last, frames, axis=-1))
        steps = np.repeat(fade ** np.arange(1, frames + 1), self.codec.config["frame_size"])[-audio.shape[-1]:]
        self.last_codes, self.gain = last, gain * fade ** frames
        return (audio * gain * steps).astype(np.float32)

    def flush(self) -> np.ndarray:
        """The stream's last samples: the overlap-add tail over its partial window sum."""
        tail = next(v for k, v in self.state.items() if k.endswith(".tail"))
        envelope = next(v for k, v in self.state.items() if k.endswith(".envelope_tail"))
        out = self._released(tail / np.maximum(envelope, self.codec.config["envelope_floor"]))
        self.reset()
        return out
