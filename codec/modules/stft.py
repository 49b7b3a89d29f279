"""Causal short-time Fourier transforms and the inverse-STFT output head (Vocos).

Causal framing: analysis frame ``i`` covers samples ``[(i + 1) * hop - n_fft, (i + 1) * hop)``,
so it ends where its hop ends and never looks ahead. Synthesis places frame ``i`` back on the
same span and overlap-adds; sample ``t`` is final once every frame covering it has been
synthesized, ``n_fft - hop`` samples later: that look-ahead is the inverse transform's latency.

Both transforms use fixed windowed Fourier bases: a strided ``conv1d`` for the analysis; for the
synthesis and overlap-add, a matrix product (every frame's samples) and shifted sums, which is a
strided ``conv_transpose1d`` written out. That is the textbook DFT, written with portable
operators, so the same graph runs in PyTorch and, exported, in ONNX Runtime. Spectra are real
tensors ``[B, 2 * bins, N]``: the real parts of the ``bins = n_fft // 2 + 1`` bins, then their
imaginary parts.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from codec.errors import CodecError
from codec.modules.conv import _HistoryState, check_whole_strides, with_history
from codec.modules.streaming import StreamingModule, StreamingState, _zeros_like_param


def fourier_basis(n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos, sin [bins, n_fft]`` with ``[k, t] = cos(2 pi k t / n_fft)`` (and ``sin``), float64."""
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    t = torch.arange(n_fft, dtype=torch.float64)[None, :]
    angle = 2 * math.pi * k * t / n_fft
    return torch.cos(angle), torch.sin(angle)


class CausalSTFT(StreamingModule):
    """``[B, 1, N * hop] -> [B, 2 * bins, N]`` (real parts, then imaginary), periodic Hann window.

    Equal to ``torch.stft(..., center=False)`` of the signal left-padded with ``n_fft - hop``
    zeros. Streaming keeps the last ``n_fft - hop`` input samples instead of the zeros.

    Raises:
        ValueError: if the input length is not a whole number of hops.
    """

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        cos, sin = fourier_basis(n_fft)
        window = torch.hann_window(n_fft, dtype=torch.float64)
        basis = torch.cat([cos * window, -sin * window])[:, None, :]  # [2 * bins, 1, n_fft]
        self.register_buffer("basis", basis.float(), persistent=False)

    def init_streaming_state(self, batch_size: int) -> _HistoryState:
        return _HistoryState(_zeros_like_param(self, batch_size, 1, self.n_fft - self.hop_length))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_whole_strides(x.shape[-1], self.hop_length, type(self).__name__)
        return F.conv1d(with_history(self, x, self.n_fft - self.hop_length), self.basis, stride=self.hop_length)


def check_synthesis_window(n_fft: int, hop_length: int, hop_text: str) -> None:
    """Raises CodecError unless the inverse STFT's window ``n_fft`` (``synthesis_n_fft`` in a
    codec's config) is an even multiple of its hop (``hop_text`` says which config fields make it)."""
    if n_fft < hop_length or n_fft % hop_length or n_fft % 2:
        raise CodecError(f"synthesis_n_fft={n_fft} must be an even multiple of {hop_text}")


@dataclass
class _OverlapAddState(StreamingState):
    tail: torch.Tensor           # [B, 1, n_fft - hop] overlap-added samples still awaiting later frames
    envelope_tail: torch.Tensor  # [B, 1, n_fft - hop] summed squared window over the same samples


class CausalISTFT(StreamingModule):
    """``[B, 2 * bins, N]`` spectrum -> waveform, by weighted overlap-add.

    Output is normalised by the summed squared window (floored at ``envelope_floor`` of its full
    value). Offline: ``[B, 1, N * hop]`` aligned with the analysis; the last ``n_fft - hop``
    samples lack the frames that would follow them and get the partial window sum, which tapers
    the very end. Streaming: each call returns the ``N * hop`` samples that no later frame will
    touch; they start ``n_fft - hop`` samples before the chunk (the stream's first ``n_fft - hop``
    samples lie before time 0 and are the caller's to drop), and ``flush()`` returns the last
    ``n_fft - hop``. See ``codec.streaming.StreamingDecoder``.
    """

    def __init__(self, n_fft: int, hop_length: int, envelope_floor: float = 0.1):
        super().__init__()
        if n_fft % hop_length:
            raise ValueError("n_fft must be a multiple of hop_length")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.overlap = n_fft - hop_length
        cos, sin = fourier_basis(n_fft)
        window = torch.hann_window(n_fft, dtype=torch.float64)
        # inverse real DFT: bins 0 and n_fft/2 count once, the others twice (their mirror images)
        weight = torch.full((n_fft // 2 + 1, 1), 2.0, dtype=torch.float64)
        weight[0] = weight[-1] = 1.0
        basis = torch.cat([cos * weight, -sin * weight]) / n_fft * window   # [2 * bins, n_fft]
        self.register_buffer("basis", basis[:, None, :].float(), persistent=False)
        self.register_buffer("window_square", window.pow(2)[None, None, :].float(), persistent=False)
        # the summed squared window averages sum(w^2) / hop per sample in steady state
        self.envelope_floor = envelope_floor * float(window.pow(2).sum()) / hop_length

    def init_streaming_state(self, batch_size: int) -> _OverlapAddState:
        return _OverlapAddState(_zeros_like_param(self, batch_size, 1, self.overlap),
                                _zeros_like_param(self, batch_size, 1, self.overlap))

    def _overlap_add(self, spec: torch.Tensor) -> torch.Tensor:
        """``[B, 2 * bins, N] -> [B, 1, (N - 1) * hop + n_fft]``: ``conv_transpose1d(spec, basis,
        stride=hop)`` written as one matrix product (every frame's samples) and ``n_fft / hop``
        shifted sums. As fast as the transposed convolution once warm, without its set-up cost
        on CPU (10-60 ms for each new input length, so for every file)."""
        batch, _, frames = spec.shape
        parts = self.n_fft // self.hop_length
        samples = (spec.transpose(1, 2) @ self.basis[:, 0]).view(batch, frames, parts, self.hop_length)
        y = sum(F.pad(samples[:, :, j], (0, 0, j, parts - 1 - j)) for j in range(parts))   # [B, N + parts - 1, hop]
        return y.reshape(batch, 1, -1)

    def _step(self, spec: torch.Tensor, state: _OverlapAddState) -> torch.Tensor:
        """Overlap-add ``spec`` onto the state's tail; returns the samples now final."""
        y = self._overlap_add(spec)                                          # [B, 1, (N - 1) * hop + n_fft]
        ones = spec.new_ones(1, 1, spec.shape[-1])
        envelope = F.conv_transpose1d(ones, self.window_square, stride=self.hop_length).expand(y.shape[0], -1, -1)
        y = torch.cat([y[..., :self.overlap] + state.tail, y[..., self.overlap:]], dim=-1)
        envelope = torch.cat([envelope[..., :self.overlap] + state.envelope_tail, envelope[..., self.overlap:]], -1)
        done = spec.shape[-1] * self.hop_length
        state.tail, state.envelope_tail = y[..., done:], envelope[..., done:]
        return y[..., :done] / envelope[..., :done].clamp(min=self.envelope_floor)

    def _flush(self, state: _OverlapAddState) -> torch.Tensor:
        return state.tail / state.envelope_tail.clamp(min=self.envelope_floor)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        if self._streaming_state is not None:
            return self._step(spec, self._streaming_state)
        state = self.init_streaming_state(spec.shape[0])  # offline: one chunk, then the end
        out = torch.cat([self._step(spec, state), self._flush(state)], dim=-1)
        return out[..., self.overlap:]

    def flush(self) -> torch.Tensor:
        """End of stream: the last ``[B, 1, n_fft - hop]`` samples; the state starts afresh."""
        out = self._flush(self._streaming_state)
        self._streaming_state = self.init_streaming_state(out.shape[0])
        return out


class ISTFTHead(nn.Module):
    """Vocos output head: features -> log-magnitude and phase -> causal inverse STFT.

    ``[B, D, N] -> [B, 1, N * hop]``. The magnitude is ``exp`` of a clamped log-magnitude and the
    phase enters through ``cos``/``sin``, as in Vocos (Siuzdak 2023, section 3). With
    ``subframes > 1`` each feature frame gives that many synthesis frames, ``hop / subframes``
    apart (finer time resolution and more overlap than the analysis; ESC, Gu et al. 2024, uses
    20 ms windows every 5 ms); the last one ends where the feature frame's hop ends.
    """

    def __init__(self, dim: int, n_fft: int, hop_length: int, subframes: int = 1):
        super().__init__()
        if hop_length % subframes:
            raise ValueError(f"hop_length {hop_length} is not a multiple of subframes {subframes}")
        self.n_bins = n_fft // 2 + 1
        self.subframes = subframes
        self.proj = nn.Linear(dim, subframes * 2 * self.n_bins)
        self.istft = CausalISTFT(n_fft, hop_length // subframes)

    def spectrum(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, D, N]`` features -> ``(magnitude, phase)``, each ``[B, bins, N * subframes]`` (phase in radians)."""
        batch, _, frames = x.shape
        spectra = self.proj(x.transpose(1, 2)).reshape(batch, frames * self.subframes, 2 * self.n_bins)
        log_magnitude, phase = spectra.transpose(1, 2).chunk(2, dim=1)
        return torch.exp(log_magnitude.clamp(max=math.log(1e3))), phase  # the clamp guards against overflow only

    def synthesize(self, magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """``magnitude``, ``phase [B, bins, N * subframes]`` -> ``[B, 1, N * hop]`` by the inverse STFT."""
        return self.istft(torch.cat([magnitude * torch.cos(phase), magnitude * torch.sin(phase)], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.synthesize(*self.spectrum(x))
