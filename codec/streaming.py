"""Streaming sessions: encode audio and decode codes as they arrive, chunk by chunk.

Each session owns the streaming state of the model parts it drives (swapped into the modules for
the duration of a call), so an encoder and a decoder session, or several sessions, can share one
model, in one thread or several (calls on one model take turns). Chunked encoding gives exactly
the codes of the network's offline encoding (``model.network.encode``), and chunked decoding plus
``flush()`` gives the offline waveform (to float rounding).

Sessions take audio as it comes: mono float samples in [-1, 1] at ``model.sample_rate`` (16 kHz
for the shipped models), with no resampling, clipping or level normalisation. ``Codec.encode``
and ``codec encode`` do all three (the default model brings each file to its input level, so its
codes differ from a session's on the same samples); a live application resamples its input
itself (e.g. with ``soxr.ResampleStream``). The bitrate is the encoder's ``num_codebooks``
(``model.network.codebooks_for_bitrate(kbps)``); it may be changed between calls, and the decoder
follows the codebook count of the codes it gets.

A session's state sits in the shared modules during its calls: tensor-level calls of the network
itself (``model.network.encode``/``decode``) must not run in another thread beside a session of
the same model (they would run on the session's state); ``Codec.encode``/``decode`` take turns
with sessions.

    model = codec.load_model()                 # or its tensor-level model.network
    encoder = StreamingEncoder(model, num_codebooks=12)
    decoder = StreamingDecoder(model)
    for block in blocks:                       # [B, 1, any length]
        audio_out = decoder.decode(encoder.encode(block))
    audio_out = decoder.decode(encoder.flush())   # pad the last partial frame with zeros
    tail = decoder.flush()                        # the decoder's look-ahead samples

The decoded stream lags the input by ``model.latency`` samples: one code frame (a frame must be
complete before it is coded) plus the inverse STFT's overlap.

A model with a time-invariant global code (TiCodec, ``config.global_groups > 0``) summarises the
first ``config.global_seconds`` of the stream: the encoder holds its codes back until then (or
until ``flush()``), then sets ``encoder.global_codes [B, G]``, which the decoder needs before its
first frame (``StreamingDecoder(model, global_codes=...)`` or ``decoder.global_codes = ...``).
With ``refresh_seconds``, the encoder recomputes it from the latest ``global_seconds`` every
``refresh_seconds`` (a call's frames all use the code in force at the call's start);
``take_global_codes()`` returns a new code once, for the sender to transmit before those frames.
"""

import threading
import weakref

import numpy as np
import torch
from torch import nn

from codec.errors import CodecError
from codec.models import ConvCodec
from codec.modules.streaming import streaming_modules
from codec.whole_numbers import check_fade, whole_number


def _network(model) -> ConvCodec:
    """The tensor-level network of ``model``: a network itself, or ``codec.Codec`` (what
    ``codec.load_model`` returns), whose ``.network`` it is."""
    if isinstance(model, nn.Module):
        return model
    network = getattr(model, "network", None)
    if not isinstance(network, nn.Module):
        raise CodecError(f"a streaming session takes a model from codec.load_model, not {type(model).__name__}")
    return network


# unsigned integer types torch cannot reduce (min/max) or index with: held as int64
_WIDE_UNSIGNED = tuple(getattr(torch, name) for name in ("uint16", "uint32", "uint64") if hasattr(torch, name))


def _as_tensor(value, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor) and value.dtype in _WIDE_UNSIGNED:
        value = value.detach().cpu().numpy()   # converted below, as numpy's are
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":   # (objects, strings, dates: torch has no such tensor)
            raise CodecError(f"{what} is a numpy array of {value.dtype}: give numbers")
        if value.dtype.kind == "u" and value.dtype.itemsize > 1:   # (torch cannot reduce these: int64)
            if value.size and value.max() > np.iinfo(np.int64).max:
                raise CodecError(f"{what} hold {int(value.max())}, more than an int64 holds")
            value = value.astype(np.int64)
        if not value.dtype.isnative:   # (torch takes native byte order only: a big-endian file's samples)
            value = value.astype(value.dtype.newbyteorder("="))
        return torch.from_numpy(np.ascontiguousarray(value))   # (a reversed view has negative strides)
    if not isinstance(value, torch.Tensor):
        raise CodecError(f"{what} must be a torch tensor (or numpy array), not {type(value).__name__}")
    return value


def _check_batch(value: torch.Tensor, batch_size: int, what: str, layout: str) -> None:
    if value.dim() != 3 or value.shape[0] != batch_size:
        raise CodecError(f"{what} has shape {tuple(value.shape)}; this session takes {layout} with B = "
                         f"batch_size = {batch_size}")


def checked_audio(audio, batch_size: int) -> torch.Tensor:
    """``audio [B, 1, n]`` as a float tensor (numpy arrays too).

    Raises:
        CodecError: for another shape or batch size, integer samples, or NaN/infinite samples.
    """
    audio = _as_tensor(audio, "audio")
    _check_batch(audio, batch_size, "audio", "[B, 1, n] (mono; one session per channel, or B = channels)")
    if audio.shape[1] != 1:
        raise CodecError(f"audio has shape {tuple(audio.shape)}: {audio.shape[1]} channels in dimension 1; "
                         f"a session codes [B, 1, n] (give channels as the batch, B = batch_size)")
    if not audio.is_floating_point():
        raise CodecError(f"audio is {str(audio.dtype).removeprefix('torch.')}: give float samples in [-1, 1] "
                         f"(e.g. int16 / 32768)")
    if not torch.isfinite(audio).all():
        raise CodecError("audio contains NaN or infinite samples")
    return audio


def checked_codes(codes, batch_size: int, model) -> torch.Tensor:
    """``codes [B, K, f]`` as an int64 tensor (numpy arrays too), with ``1 <= K <=
    model.num_codebooks`` and every code below ``model.codebook_size``.

    Raises:
        CodecError: naming what is wrong.
    """
    codes = _as_tensor(codes, "codes")
    _check_batch(codes, batch_size, "codes", "[B, K, f]")
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise CodecError(f"codes are {str(codes.dtype).removeprefix('torch.')}: give integer code indices "
                         f"(from StreamingEncoder.encode)")
    if not 1 <= codes.shape[1] <= model.num_codebooks:
        raise CodecError(f"codes have {codes.shape[1]} codebooks; this model has 1 to {model.num_codebooks}")
    if problem := model.code_range_problem(codes):
        raise CodecError(problem)
    return codes.long()


class _Session:
    def __init__(self, model: ConvCodec, parts: list[nn.Module], batch_size: int):
        self.model = model
        self.batch_size = whole_number(batch_size, "batch_size", 1)
        self._parts = nn.ModuleList(parts)
        self._modules = [module for _, module in streaming_modules(self._parts)]  # walked once, not per call
        self.reset()

    def reset(self) -> None:
        """Start a new stream (for the next file): zero state, empty buffers."""
        self._state = [module.init_streaming_state(self.batch_size) for module in self._modules]

    def _run(self, function, *args):
        # the session's state lives in the shared modules for the length of a call: one call at a
        # time per model, so that sessions in several threads do not run on each other's state
        with _model_lock(self.model):
            for module, state in zip(self._modules, self._state, strict=True):
                module._streaming_state = state
            try:
                with torch.inference_mode():
                    result = function(*args)
                # out of inference mode, a copy is an ordinary tensor: the caller may change it in
                # place or use it in autograd (an inference tensor refuses both)
                return result.clone() if isinstance(result, torch.Tensor) else result
            finally:
                self._state = [module._streaming_state for module in self._modules]
                for module in self._modules:
                    module._streaming_state = None


_model_locks: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_model_locks_guard = threading.Lock()


def _model_lock(model: nn.Module) -> threading.RLock:
    """The lock of ``model``'s streaming state (kept beside the model, which may be deep-copied)."""
    with _model_locks_guard:
        return _model_locks.setdefault(model, threading.RLock())


class StreamingEncoder(_Session):
    """``encode(audio [B, 1, n]) -> codes [B, K, f]`` for chunks of any length ``n``.

    Samples short of a whole frame are kept for the next call; ``flush()`` codes them padded
    with zeros, as offline encoding pads the end of a signal. With a ``refiner``
    (``codec.refine.LatentRefiner``), each call's latent is refined before it is quantized:
    far slower, meant for file encoding in long blocks rather than live streams.
    """

    def __init__(self, model: ConvCodec, num_codebooks: int, batch_size: int = 1,
                 refresh_seconds: float | None = None, refiner=None):
        self.model = _network(model)
        self.num_codebooks = num_codebooks   # checked before any audio arrives
        self.refiner = refiner   # a LatentRefiner (codec/refine.py) between the encoder and quantizer
        self.refresh_frames = (None if refresh_seconds is None
                               else max(1, round(refresh_seconds * self.model.frame_rate)))
        super().__init__(self.model, self.model.encoder_parts(), batch_size)

    @property
    def num_codebooks(self) -> int:
        """Codebooks per frame, the bitrate (``model.codebooks_for_bitrate(kbps)``); it may be set
        between calls.

        Raises:
            CodecError: when set to a count the model does not have.
        """
        return self._num_codebooks

    @num_codebooks.setter
    def num_codebooks(self, value: int) -> None:
        value = whole_number(value, "num_codebooks", 1)
        try:
            self.model.check_codebook_count(value)
        except ValueError as error:
            raise CodecError(str(error)) from None
        self._num_codebooks = value

    def reset(self) -> None:
        super().reset()
        if self.refiner is not None:
            self.refiner.reset()
        self._buffer = torch.zeros(self.batch_size, 1, 0)
        self.global_codes = None     # [B, G] once known (models with a global code)
        self._held = None            # latent frames awaiting it, [B, D, f]
        self._recent = None          # the latest global_frames latent frames, for a refresh
        self._since_refresh = 0
        self._new_global = False
        self._flushing = False
        self._ended = False          # flushed: the next encode() starts a new stream

    def take_global_codes(self) -> torch.Tensor | None:
        """The global code ``[B, G]`` if it was set or refreshed since the last call, else None."""
        new, self._new_global = self._new_global, False
        return self.global_codes if new else None

    def _refresh(self, latent: torch.Tensor) -> None:
        """Keep the latest frames; every ``refresh_frames``, a new global code from them."""
        frames = self.model.global_frames
        self._recent = latent[..., -frames:] if self._recent is None else \
            torch.cat([self._recent, latent], dim=-1)[..., -frames:]
        self._since_refresh += latent.shape[-1]
        if self._since_refresh >= self.refresh_frames:
            self.global_codes, self._new_global = self.model.encode_global(self._recent), True
            self._since_refresh = 0

    def _no_codes(self) -> torch.Tensor:
        return torch.zeros(self.batch_size, self.num_codebooks, 0, dtype=torch.long)

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Codes of every frame completed by this chunk: ``[B, K, f]`` (``f`` may be 0).

        Raises:
            CodecError: for audio that is not ``[B, 1, n]`` float samples (see ``checked_audio``).
        """
        audio = checked_audio(audio, self.batch_size)
        if self._ended and not self._flushing:
            self.reset()
        audio = torch.cat([self._buffer, audio.to(self._buffer.dtype)], dim=-1)
        whole = audio.shape[-1] // self.model.frame_size * self.model.frame_size
        self._buffer = audio[..., whole:]
        if whole == 0 and not self._flushing:
            return self._no_codes()
        if self.refiner is not None:
            return self._encode_refined(audio[..., :whole])
        return self._run(self._encode_whole_frames, audio[..., :whole])

    def _encode_refined(self, audio: torch.Tensor) -> torch.Tensor:
        """Latent, refined outside the session (it needs gradients), then codes in the session.
        The model's lock is held throughout: the refiner runs the shared modules without a
        session's state, which another thread's session would otherwise swap in mid-refinement."""
        if audio.shape[-1] == 0:
            return self._no_codes()
        with _model_lock(self.model):
            latent = self.refiner(self._run(self.model.encode_latent, audio), audio)
            return self._run(self.model.quantize_latent, latent, self.num_codebooks)

    def _encode_whole_frames(self, audio: torch.Tensor) -> torch.Tensor:
        """Inside the session's state: latent, then codes (the ESC codec's quantizer has state)."""
        model = self.model
        latent = model.encode_latent(audio) if audio.shape[-1] else None
        if model.global_code is not None and self.global_codes is None:
            held = [t for t in (self._held, latent) if t is not None]
            self._held = torch.cat(held, dim=-1) if held else None
            if (self._held is None or self._held.shape[-1] < model.global_frames) and not self._flushing:
                return self._no_codes()
            latent, self._held = self._held, None
            self.global_codes = model.encode_global(latent) if latent is not None else \
                torch.zeros(self.batch_size, model.config.global_groups, dtype=torch.long)  # an empty stream
            self._new_global, self._recent = True, None if latent is None else latent[..., -model.global_frames:]
        elif latent is not None and self.refresh_frames is not None and self.global_codes is not None:
            self._refresh(latent)
        if latent is None:
            return self._no_codes()
        return model.quantize_latent(latent, self.num_codebooks, self.global_codes)

    def flush(self) -> torch.Tensor:
        """Codes of the buffered partial frame, zero-padded (``[B, K, 0]`` if none is buffered),
        and of any frames held back for the global code. The stream ends here: the next
        ``encode()`` starts a new one, as after ``reset()`` (``global_codes`` stays readable
        until then)."""
        if self._buffer.shape[-1]:
            pad = self.model.frame_size - self._buffer.shape[-1]
            self._buffer = torch.nn.functional.pad(self._buffer, (0, pad))
        self._flushing = True
        try:
            return self.encode(torch.zeros(self.batch_size, 1, 0))
        finally:
            self._flushing, self._ended = False, True

    @property
    def buffered_samples(self) -> int:
        return self._buffer.shape[-1]


class StreamingDecoder(_Session):
    """``decode(codes [B, K, f]) -> audio [B, 1, n]``: every sample that is final after them.

    The first samples of a stream (the output inverse STFT's overlap) come out one call late; ``flush()``
    returns the last ones at the end of the stream.
    """

    def __init__(self, model: ConvCodec, batch_size: int = 1, global_codes: torch.Tensor | None = None):
        model = _network(model)
        super().__init__(model, model.decoder_parts(), batch_size)
        self.global_codes = global_codes   # [B, G] for a model with a global code (kept across reset)

    @property
    def global_codes(self) -> torch.Tensor | None:
        return self._global_codes

    @global_codes.setter
    def global_codes(self, codes: torch.Tensor | None) -> None:
        """Set (or refresh) the stream's global code; the decoder's condition follows from it once."""
        self._global_codes = codes
        with torch.inference_mode():
            self._condition = self.model.decoder_condition(codes)

    def reset(self) -> None:
        super().reset()
        self._to_drop = self.model.head.istft.overlap  # the first synthesis frames start before time 0
        self._last_latent = None

    def _released(self, audio: torch.Tensor) -> torch.Tensor:
        drop = min(self._to_drop, audio.shape[-1])
        self._to_drop -= drop
        return audio[..., drop:]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, 1, n]`` made final by these codes.

        Raises:
            CodecError: for codes that are not ``[B, K, f]`` integer codes of this model (see
                ``checked_codes``).
        """
        codes = checked_codes(codes, self.batch_size, self.model)
        if codes.shape[-1] == 0:
            return torch.zeros(self.batch_size, 1, 0)
        with torch.inference_mode():
            latent = self.model.dequantize(codes, self.global_codes)
        self._last_latent = latent[..., -1:]
        return self._released(self._decode_latent(latent))

    def _decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """The decoder on ``latent``, conditioned on the global code where the model uses one."""
        if self._condition is None:
            return self._run(self.model.decode_latent, latent)
        return self._run(self.model.decode_latent, latent, self._condition)

    def conceal(self, frames: int, fade: float = 0.7) -> torch.Tensor:
        """Stand-in audio for ``frames`` lost frames (packet loss): the last received frame's
        latent repeated, scaled by ``fade`` per frame so a long gap fades out; silence-level
        latents if nothing was received yet. Keeps the stream's timing and length.

        Raises:
            CodecError: if ``frames`` is not a whole number >= 0, or ``fade`` not a number from 0 to 1.
        """
        frames, fade = whole_number(frames, "frames", 0), check_fade(fade)
        if frames <= 0:
            return torch.zeros(self.batch_size, 1, 0)
        last = self._last_latent
        if last is None:
            last = torch.zeros(self.batch_size, self.model.latent_channels, 1)
        gains = fade ** torch.arange(1, frames + 1, dtype=last.dtype)
        latent = last * gains
        self._last_latent = latent[..., -1:]
        return self._released(self._decode_latent(latent))

    def flush(self) -> torch.Tensor:
        """The last samples of the stream; the session is then ready for a new stream."""
        out = self._released(self._run(self.model.head.istft.flush))
        self.reset()
        return out


class ChannelSessions:
    """Streaming sessions each for a run of consecutive batch items (``parts``, in order) behind
    the batched interface of ``StreamingEncoder`` (``encode``, ``flush``, ``buffered_samples``,
    ``global_codes``) or ``StreamingDecoder`` (``decode``, ``conceal``, ``flush``,
    ``global_codes``). For a model computing in int8 (``codec/int8.py``): its activation scale
    spans each call's whole input, so channels coded as one batch would change each other's
    rounding, and a file's channels are to be coded each on its own. For a file of many channels
    in float: groups of ``CHANNEL_GROUP`` (one batch of 256 channels took twice as long)."""

    def __init__(self, sessions: list[_Session], parts: list[slice]):
        self.sessions = sessions
        self.slices = parts

    def _each(self, method: str, *batched: torch.Tensor, **shared) -> torch.Tensor:
        return torch.cat([getattr(session, method)(*(t[part] for t in batched), **shared)
                          for part, session in zip(self.slices, self.sessions, strict=True)])

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        return self._each("encode", audio)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self._each("decode", codes)

    def conceal(self, frames: int, fade: float = 0.7) -> torch.Tensor:
        return self._each("conceal", frames=frames, fade=fade)

    def flush(self) -> torch.Tensor:
        return self._each("flush")

    @property
    def buffered_samples(self) -> int:
        return self.sessions[0].buffered_samples

    @property
    def global_codes(self) -> torch.Tensor | None:
        codes = [session.global_codes for session in self.sessions]
        return None if codes[0] is None else torch.cat(codes)

    @global_codes.setter
    def global_codes(self, codes: torch.Tensor | None) -> None:   # a decoder's, refreshed mid-stream
        for part, session in zip(self.slices, self.sessions, strict=True):
            session.global_codes = None if codes is None else codes[part]


CHANNEL_GROUP = 16   # a file's channels per batch in float (256 channels of 1 s: 10.0 s as one batch, 4.6 s in 16s)


def _channel_groups(model: ConvCodec, channels: int) -> list[slice]:
    """The runs of a file's ``channels`` that sessions code: one each for a model computing in
    int8, else groups of ``CHANNEL_GROUP``."""
    width = 1 if getattr(model, "int8", False) else CHANNEL_GROUP
    return [slice(first, min(first + width, channels)) for first in range(0, channels, width)]


def file_encoder(model: ConvCodec, num_codebooks: int, channels: int, new_refiner=None):
    """The encoder session for a file's ``channels``: one batched session, or sessions for groups
    of them (see ``ChannelSessions``). ``new_refiner()``, if given, makes each session its own
    ``LatentRefiner``: a refiner holds its stream's last refined frames, one batch's worth."""
    parts = _channel_groups(model, channels)

    def refiner():
        return None if new_refiner is None else new_refiner()

    if len(parts) <= 1:   # (one session; none for no channels, which the batched one refuses)
        return StreamingEncoder(model, num_codebooks, batch_size=channels, refiner=refiner())
    return ChannelSessions([StreamingEncoder(model, num_codebooks, part.stop - part.start, refiner=refiner())
                            for part in parts], parts)


def file_decoder(model: ConvCodec, channels: int, global_codes: torch.Tensor | None = None):
    """The decoder session for a file's ``channels`` (``global_codes [C, G]`` or None), as
    ``file_encoder``."""
    parts = _channel_groups(model, channels)
    if len(parts) <= 1:   # (one session; none for no channels, which the batched one refuses)
        return StreamingDecoder(model, batch_size=channels, global_codes=global_codes)
    return ChannelSessions([StreamingDecoder(model, part.stop - part.start,
                                             None if global_codes is None else global_codes[part])
                            for part in parts], parts)
