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
        self.codec, self.num_codebooks, self.batch_size = codec, num_codebooks, batch_size
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
        audio = np.concatenate([self.buffer, np.asarray(audio, dtype=np.float32)], axis=-1)
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
        self.codec, self.batch_size = codec, batch_size
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
        if frames <= 0:
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
