"""Coding with the exported ONNX graphs in onnxruntime (CPU), frame by frame.

``OnnxStreamingEncoder`` and ``OnnxStreamingDecoder`` behave like ``codec.streaming``'s sessions:
the encoder buffers partial frames and ``flush()`` codes the rest zero-padded; the decoder drops
the stream's first ``overlap`` samples and ``flush()`` returns the last ones. State lives in
numpy arrays owned by the session and goes in and out of the graphs on every call.

Level: a model with an input level (``codec.json``'s ``input_level_dbfs``, -18 dBFS for the
default model; null for conv-16k) was trained on speech near it, and ``codec encode`` brings each
file to it before encoding (DC removed, one gain per channel, ``codec.level``) and ``codec decode``
undoes the gain. The graphs do neither. ``OnnxCodec.encode`` and ``OnnxCodec.decode`` code whole
signals as ``codec encode`` and ``codec decode`` do (at the model's sample rate): ``encode``
returns the gain with the codes and ``decode`` undoes it. The streaming sessions code audio at the
level it comes, as ``codec stream`` does (a live stream's level is not known ahead): quiet input
codes worse. A caller who knows a source's level can scale it to ``input_level_dbfs`` before the
encoder and the decoder's output back by the same dB; codes from a ``.codes`` file were made from
audio scaled by its ``gain_db`` (``codec info --json``), which their decoded audio must be scaled
back by (``OnnxCodec.decode(codes, gain_db)`` does). The same holds for the model's input high-pass
(``input_highpass_hz``, ``codec.highpass``): ``OnnxCodec.encode`` applies it, the sessions do not.

With int8 weights (``codec export --int8``) the graphs quantize each call's activations with one
scale for the whole call (every signal of the batch, every frame): the codes and audio depend on
how the audio is chunked and batched, not only on the audio (float32 graphs do not, to rounding).
"""

import json
import os
from pathlib import Path

import numpy as np

from codec.audio import limited_float_samples
from codec.band_fill import QuietFloor
from codec.errors import CodecError
from codec.highpass import HighPass
from codec.level import amplitude, measure_leveling
from codec.whole_numbers import check_fade, whole_number

CHUNK_FRAMES = 50   # frames per graph call in OnnxCodec.encode and decode (1 s at 20 ms frames)
FADED = 1e-6        # a concealed frame's latent this far faded is decoded as a zero latent


# what OnnxCodec reads from an export's codec.json (written by codec.onnx.export)
SIDECAR_KEYS = ("graphs", "sample_rate", "frame_size", "num_codebooks", "codebook_size", "overlap", "envelope_floor")


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
        single = audio.astype(np.float32, copy=False)
    if not np.isfinite(single).all():   # (the input looked at again only then, to say which it was)
        raise CodecError("audio contains NaN or infinite samples" if not np.isfinite(audio).all() else
                         "audio holds samples beyond float32's range (3.4e38); give float samples in [-1, 1]")
    return single


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


def _unscale(gain_db, batch_size: int) -> np.ndarray | float:
    """The factor that undoes a level gain of ``gain_db`` (None, one number, or ``[B]``)."""
    if gain_db is None:
        return 1.0
    try:   # numbers only: text such as "3" is not a gain, nor True one of 1 dB
        gains = np.asarray(gain_db)
        gains = gains.astype(np.float64) if gains.dtype.kind in "iuf" else np.full(2, np.nan)
    except (TypeError, ValueError):
        gains = np.full(2, np.nan)
    if gains.ndim > 1 or (gains.ndim == 1 and len(gains) != batch_size) or not np.isfinite(gains).all():
        raise CodecError(f"gain_db {gain_db!r}: give None, one number or a list of one per signal "
                         f"({batch_size}), in dB (from OnnxCodec.encode, or a .codes file's gain_db)")
    return amplitude(-gains)[:, None, None] if gains.ndim else float(amplitude(-gains))


def _codes_graph(graphs, num_codebooks: int) -> str:
    """Of the graph names ``graphs``, the smallest that gives ``num_codebooks`` codebooks: a
    quantizer after the shared encoder (conv codec), or a whole encoder per bitrate (ESC).
    Raises CodecError where none does."""
    kind = "quantizer_" if any(g.startswith("quantizer_") for g in graphs) else "encoder_"
    available = sorted(int(g.removeprefix(kind)) for g in graphs if g.startswith(kind) and g[len(kind):].isdigit())
    enough = [k for k in available if k >= num_codebooks]
    if not enough:   # (a graph gives its count or fewer: the first codebooks of its codes)
        raise CodecError(f"{num_codebooks} codebooks asked for; the exported graphs give "
                         f"{f'1 to {available[-1]}' if available else 'none (codec.json lists no encoder graph)'}")
    return f"{kind}{enough[0]}"


def _not_loaded(graph: str) -> CodecError:
    return CodecError(f"graph {graph} was not loaded: this OnnxCodec was made for other codebook counts (its "
                      f"num_codebooks); make one with num_codebooks=None for all")


def streaming_graphs(graphs, num_codebooks: int) -> set[str]:
    """The names, of the graph names ``graphs``, that an encoder and a decoder session of
    ``num_codebooks`` codebooks run. Raises CodecError as ``_codes_graph``."""
    codes_graph = _codes_graph(graphs, num_codebooks)
    return {codes_graph, "decoder"} | ({"encoder"} if codes_graph.startswith("quantizer_") else set())


class OnnxCodec:
    """The graphs of an exported codec (``codec export --format onnx``): for a conv codec an
    encoder step and one quantizer per bitrate; for ESC one whole encoder step (quantizing
    included) per bitrate; then a decoder step. ``encode`` and ``decode`` code whole signals, with
    the model's level normalisation; ``OnnxStreamingEncoder`` and ``OnnxStreamingDecoder`` stream
    (without it: see the module's docstring)."""

    def __init__(self, directory: Path | str, threads: int = 1, num_codebooks: int | None = None):
        """``num_codebooks``: load only the graphs that code this many codebooks (the decoder and
        the encoder graphs ``OnnxStreamingEncoder`` takes for them; loading each graph takes a
        fraction of a second), None: all.

        Raises CodecError for a folder that is not an export, ``threads`` not a whole number >= 1,
        or ``num_codebooks`` more than the graphs give."""
        import onnxruntime

        if not isinstance(directory, (str, os.PathLike)):
            raise CodecError(f"OnnxCodec takes the folder of an export (codec export), not {type(directory).__name__}")
        directory = Path(directory)
        try:
            self.config = json.loads((directory / "codec.json").read_text())
        except (OSError, ValueError) as error:
            raise CodecError(f"{directory}: not an exported codec ({error})") from None
        lacking = [key for key in SIDECAR_KEYS if not isinstance(self.config, dict) or key not in self.config]
        if lacking or not isinstance(self.config["graphs"], dict) \
                or not all(isinstance(spec, dict) and "file" in spec for spec in self.config["graphs"].values()):
            raise CodecError(f"{directory / 'codec.json'}: not what codec export writes ("
                             f"{'no ' + ', '.join(lacking) if lacking else 'graphs without files'}); export the "
                             f"model again")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = whole_number(threads, "threads", 1)   # (0 would be every core)
        options.inter_op_num_threads = 1
        self.sessions = {}
        wanted = self.config["graphs"] if num_codebooks is None else streaming_graphs(
            self.config["graphs"], whole_number(num_codebooks, "num_codebooks", 1))
        for graph, spec in self.config["graphs"].items():
            if graph not in wanted:
                continue
            try:   # read here, not by onnxruntime: it takes a path only as UTF-8 text, and a folder's need not be
                serialized = (directory / spec["file"]).read_bytes()
            except OSError as error:
                raise CodecError(f"{directory}: cannot read its graph {spec['file']} ({error.strerror})") from None
            try:
                self.sessions[graph] = onnxruntime.InferenceSession(serialized, options,
                                                                    providers=["CPUExecutionProvider"])
            except Exception as error:   # (onnxruntime's own kinds: InvalidProtobuf, Fail, ...)
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise CodecError(f"{directory}: cannot load its graph {spec['file']} (damaged? export the model "
                                 f"again): {reason}") from None

    @property
    def input_level_dbfs(self) -> float | None:
        """The active level (dBFS) ``encode`` brings each signal to; None: input is coded as it comes
        (a model without one, or an export older than the field)."""
        return self.config.get("input_level_dbfs")

    def encode(self, audio: np.ndarray, num_codebooks: int,
               chunk_frames: int = CHUNK_FRAMES) -> tuple[np.ndarray, float | list[float] | None]:
        """Whole signals ``audio [B, 1, n]`` (float samples at the model's sample rate, B channels
        or signals, each coded on its own) -> ``(codes [B, K, f], gain_db)``, ``f = ceil(n /
        frame_size)``, as ``codec encode`` codes a file at the model's rate: for a model with an
        input level, each signal is high-passed (for a model with ``input_highpass_hz``), its DC
        offset removed and it is scaled to that level first, and a quiet noise floor added
        (``codec.band_fill.QuietFloor``);
        ``gain_db`` is that gain (one number, or a list of one per signal where they differ; None
        when nothing was scaled), which ``decode`` undoes. No resampling; samples beyond ±1 are
        scaled with the rest for a model with an input level, clipped with a ``UserWarning`` for
        other models, as ``Codec.encode`` does. The graphs run on ``chunk_frames`` frames at a time.

        Raises:
            CodecError: for audio that is not ``[B, 1, n]`` finite floats, samples beyond ±256
                (integer PCM held in floats), or a codebook count or ``chunk_frames`` the export
                cannot take.
        """
        batch = audio.shape[0] if isinstance(audio, np.ndarray) and audio.ndim == 3 else 1
        audio = limited_float_samples(_checked_audio(audio, batch), stacklevel=2,
                                      leveled=self.input_level_dbfs is not None)
        encoder = OnnxStreamingEncoder(self, num_codebooks, batch)
        step = whole_number(chunk_frames, "chunk_frames", 1) * self.config["frame_size"]
        leveling = measure_leveling([audio[:, 0].T], self.config["sample_rate"], self.input_level_dbfs,
                                    self.config.get("input_highpass_hz"))
        signals = HighPass(self.config.get("input_highpass_hz"), self.config["sample_rate"])(audio[:, 0].T)   # [n, B]
        signals = leveling(signals) if self.input_level_dbfs is None else QuietFloor()(leveling(signals))
        audio = np.ascontiguousarray(signals.T[:, None, :], dtype=np.float32)
        codes = [encoder.encode(audio[..., start:start + step]) for start in range(0, audio.shape[-1], step)]
        codes.append(encoder.flush())
        gain_db = leveling.gain_db   # as a .codes file's gain_db: per signal where they differ, None for none
        return (np.concatenate(codes, axis=-1),
                [float(g) for g in gain_db] if isinstance(gain_db, list) else (float(gain_db) or None))

    def decode(self, codes: np.ndarray, gain_db: float | list[float] | None = None, samples: int | None = None,
               chunk_frames: int = CHUNK_FRAMES) -> np.ndarray:
        """Whole signals from ``codes [B, K, f]`` (from ``encode``, or a ``.codes`` file's ``[C, K,
        f]`` at the model's rate) -> ``audio [B, 1, n]`` float32, aligned with the input (the
        decoder's latency removed), scaled back by ``gain_db`` (``encode``'s, or the file's
        metadata's: one number, one per signal, or None), ``n = samples`` (the input's length)
        or, if None, ``f * frame_size``. The graphs run on ``chunk_frames`` frames at a time.

        Raises:
            CodecError: for codes that are not ``[B, K, f]`` integer codes of this model, a gain
                that is not one finite number or one per signal, or more samples than ``f``
                frames hold.
        """
        batch = codes.shape[0] if isinstance(codes, np.ndarray) and codes.ndim == 3 else 1
        codes = _checked_codes(codes, batch, self.config["num_codebooks"], self.config["codebook_size"])
        unscale = _unscale(gain_db, batch)
        step = whole_number(chunk_frames, "chunk_frames", 1)
        decoder = OnnxStreamingDecoder(self, batch)
        audio = [decoder.decode(codes[..., start:start + step]) for start in range(0, codes.shape[-1], step)]
        audio = np.concatenate([*audio, decoder.flush()], axis=-1)
        if samples is not None:
            if whole_number(samples, "samples", 0) > audio.shape[-1]:
                raise CodecError(f"samples {samples}: {codes.shape[-1]} frames of codes hold at most "
                                 f"{audio.shape[-1]} samples")
            audio = audio[..., :samples]
        return (audio * unscale).astype(np.float32)

    def initial_state(self, graph: str, batch_size: int) -> dict[str, np.ndarray]:
        spec = self.config["graphs"][graph]
        states = {s["input"] for s in spec["states"]}
        return {i["name"]: np.zeros([batch_size if d == "batch" else d for d in i["shape"]], dtype=i["dtype"])
                for i in spec["inputs"] if i["name"] in states}

    def run(self, graph: str, inputs: dict[str, np.ndarray], state: dict[str, np.ndarray]):
        """One step: returns ``(main output, next state)``."""
        if graph not in self.sessions:
            raise _not_loaded(graph)
        spec = self.config["graphs"][graph]
        names = [spec["outputs"][0]["name"]] + [s["output"] for s in spec["states"]]
        results = self.sessions[graph].run(names, {**inputs, **state})
        return results[0], {s["input"]: value for s, value in zip(spec["states"], results[1:], strict=True)}


class OnnxStreamingEncoder:
    """``encode(audio [B, 1, n] float32) -> codes [B, K, f]`` for chunks of any length; the end of
    a stream is ``flush()``. The audio is coded at the level it comes (no level normalisation, as
    ``codec stream``; see the module's docstring)."""

    def __init__(self, codec: OnnxCodec, num_codebooks: int, batch_size: int = 1):
        """Raises CodecError for ``num_codebooks`` or ``batch_size`` below 1 or more codebooks
        than the exported graphs give."""
        self.codec = codec
        self._num_codebooks = whole_number(num_codebooks, "num_codebooks", 1)
        self.batch_size = whole_number(batch_size, "batch_size", 1)
        self.frame_size = codec.config["frame_size"]
        # the smallest loaded graph that gives the codebooks asked for (all of the export's, unless
        # the OnnxCodec was made for some codebook count): a quantizer after the shared encoder
        # (conv codec), or a whole encoder per bitrate (ESC)
        try:
            self.graph = _codes_graph(codec.sessions, self._num_codebooks)
        except CodecError:   # (the export has one that was not loaded, or none: say which)
            raise _not_loaded(_codes_graph(codec.config["graphs"], self._num_codebooks)) from None
        self.kind = "quantizer_" if self.graph.startswith("quantizer_") else "encoder_"
        self.reset()

    @property
    def num_codebooks(self) -> int:
        """Codebooks per frame, fixed for the session (unlike ``StreamingEncoder``'s): its graph was
        chosen for them, and an ESC export's encoder graph per bitrate has a state of its own.

        Raises:
            CodecError: when set; make a new session for another bitrate.
        """
        return self._num_codebooks

    @num_codebooks.setter
    def num_codebooks(self, value) -> None:
        raise CodecError(f"num_codebooks is fixed for an ONNX streaming session ({self._num_codebooks}: its graph "
                         f"was chosen for them); make a new OnnxStreamingEncoder for {value!r}")

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
    """``decode(codes [B, K, f]) -> audio [B, 1, n]``: every sample that is final after them; the
    end of a stream is ``flush()``. No gain is undone (codes of a ``.codes`` file with a ``gain_db``:
    scale the audio by ``10 ** (-gain_db / 20)``, or use ``OnnxCodec.decode``)."""

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
        if codes.shape[-1] == 0:
            return np.zeros((self.batch_size, 1, 0), dtype=np.float32)
        self.last_codes, self.gain = codes[..., -1:], 1.0
        return self._released(self._run(codes, 1.0))

    def _run(self, codes: np.ndarray, gain: float) -> np.ndarray:
        """The decoder graph on ``codes [B, K, f]``, each codebook's contribution weighted by
        ``gain`` (the mask input: 1 for those in use, 0 for the rest, times ``gain``)."""
        batch, used, frames = codes.shape
        padded = np.zeros((batch, self.num_codebooks, frames), dtype=np.int64)
        padded[:, :used] = codes
        mask = (np.arange(self.num_codebooks) < used).astype(np.float32) * np.float32(gain)
        audio, self.state = self.codec.run("decoder", {"codes": padded, "codebook_mask": mask}, self.state)
        return audio

    def conceal(self, frames: int, fade: float = 0.7) -> np.ndarray:
        """Stand-in audio for lost frames, as ``codec.streaming.StreamingDecoder.conceal`` gives it:
        the last received frame's dequantized latent repeated, scaled by ``fade`` per frame (here
        through the graph's codebook mask, which weights every codebook's contribution), a zero
        latent before any frame was received. Keeps the stream's timing and length.

        Raises:
            CodecError: if ``frames`` is not a whole number >= 0, or ``fade`` not a number from 0 to 1.
        """
        frames, fade = whole_number(frames, "frames", 0), check_fade(fade)
        if frames == 0:
            return np.zeros((self.batch_size, 1, 0), dtype=np.float32)
        last, gain = self.last_codes, self.gain
        if last is None:   # (no frame yet: a zero latent, whatever the codes)
            last, gain = np.zeros((self.batch_size, 1, 1), dtype=np.int64), 0.0
        audio = []
        for done in range(frames):   # one call per gain (the mask is one per call)
            gain *= fade
            if gain < FADED or fade == 1.0:   # the rest alike: in one call (a long gap's cost)
                audio.append(self._run(np.repeat(last, frames - done, axis=-1), 0.0 if gain < FADED else gain))
                gain *= fade ** (frames - done - 1)
                break
            audio.append(self._run(last, gain))
        self.gain = gain if gain >= FADED else 0.0
        self.last_codes = last
        return self._released(np.concatenate(audio, axis=-1))

    def flush(self) -> np.ndarray:
        """The stream's last samples: the overlap-add tail over its partial window sum."""
        tail = next(v for k, v in self.state.items() if k.endswith(".tail"))
        envelope = next(v for k, v in self.state.items() if k.endswith(".envelope_tail"))
        out = self._released(tail / np.maximum(envelope, self.codec.config["envelope_floor"]))
        self.reset()
        return out
