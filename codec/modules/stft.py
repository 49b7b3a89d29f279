"""Causal short-time Fourier transforms and the inverse-STFT output head (Vocos).

Causal framing: analysis frame ``i`` covers samples ``[(i + 1) * hop - n_fft, (i + 1) * hop)``,
so it ends where its hop ends and never looks ahead. Synthesis places frame ``i`` back on the
same span and overlap-adds; sample ``t`` is final once every frame covering it has been
synthesized, ``n_fft - hop`` samples later: that look-ahead is the inverse transform's latency.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from codec.modules.conv import _HistoryState, check_whole_strides, with_history
from codec.modules.streaming import StreamingModule, StreamingState, _zeros_like_param


class CausalSTFT(StreamingModule):
    """``[B, 1, N * hop] -> [B, n_fft // 2 + 1, N]`` complex spectrum, periodic Hann window.

    Streaming keeps the last ``n_fft - hop`` input samples, so chunks give the frames that the
    whole signal gives.

    Raises:
        ValueError: if the input length is not a whole number of hops.
    """

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def init_streaming_state(self, batch_size: int) -> _HistoryState:
        return _HistoryState(_zeros_like_param(self, batch_size, 1, self.n_fft - self.hop_length))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_whole_strides(x.shape[-1], self.hop_length, type(self).__name__)
        x = with_history(self, x, self.n_fft - self.hop_length).squeeze(1)
        return torch.stft(x, self.n_fft, self.hop_length, window=self.window, center=False, return_complex=True)


@dataclass
class _OverlapAddState(StreamingState):
    tail: torch.Tensor          # [B, n_fft - hop] overlap-added samples still awaiting later frames
    envelope_tail: torch.Tensor  # [n_fft - hop] summed squared window over the same samples
    to_drop: torch.Tensor       # [] samples before time 0 still to discard (at the stream's start)


class CausalISTFT(StreamingModule):
    """``[B, n_fft // 2 + 1, N]`` complex spectrum -> waveform, by weighted overlap-add.

    Output is normalised by the summed squared window. Offline, ``[B, 1, N * hop]``: the last
    ``n_fft - hop`` samples lack the frames that would follow them and are normalised by the
    partial window sum (floored at ``envelope_floor`` of the full sum), which tapers the very end.
    Streaming, each call returns only the samples that are final, ``n_fft - hop`` behind the
    input, and ``flush()`` returns the rest, so the stream's total equals the offline output.
    """

    def __init__(self, n_fft: int, hop_length: int, envelope_floor: float = 0.1):
        super().__init__()
        if n_fft % hop_length:
            raise ValueError("n_fft must be a multiple of hop_length")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.overlap = n_fft - hop_length
        window = torch.hann_window(n_fft)
        self.register_buffer("window", window, persistent=False)
        self.envelope_floor = envelope_floor * float(window.pow(2).sum()) / (n_fft // hop_length)

    def init_streaming_state(self, batch_size: int) -> _OverlapAddState:
        return _OverlapAddState(_zeros_like_param(self, batch_size, self.overlap),
                                _zeros_like_param(self, self.overlap),
                                torch.tensor(self.overlap))

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, n_fft, N] -> [B, (N - 1) * hop + n_fft]``."""
        length = (frames.shape[-1] - 1) * self.hop_length + self.n_fft
        return F.fold(frames, output_size=(1, length), kernel_size=(1, self.n_fft),
                      stride=(1, self.hop_length)).flatten(1)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        num_frames = spec.shape[-1]
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=1) * self.window[:, None]   # [B, n_fft, N]
        y = self._overlap_add(frames)
        envelope = self._overlap_add(self.window.pow(2)[None, :, None].expand(1, -1, num_frames))[0]
        state = self._streaming_state or self.init_streaming_state(spec.shape[0])
        y = torch.cat([y[:, :self.overlap] + state.tail, y[:, self.overlap:]], dim=1)
        envelope = torch.cat([envelope[:self.overlap] + state.envelope_tail, envelope[self.overlap:]])
        done = num_frames * self.hop_length  # samples no later frame will touch
        out = y[:, :done] / envelope[:done].clamp(min=self.envelope_floor)
        drop = int(state.to_drop)
        out = out[:, min(drop, done):]
        state.to_drop = torch.tensor(max(0, drop - done))
        state.tail, state.envelope_tail = y[:, done:], envelope[done:]
        if self._streaming_state is None:  # offline: the end of the signal is here too
            out = torch.cat([out, self._flush(state)], dim=1)
        return out.unsqueeze(1)

    def _flush(self, state: _OverlapAddState) -> torch.Tensor:
        out = state.tail / state.envelope_tail.clamp(min=self.envelope_floor)
        return out[:, int(state.to_drop):]

    def flush(self) -> torch.Tensor:
        """End of stream: ``[B, 1, n_fft - hop]`` last samples (fewer if the stream was shorter)."""
        state = self._streaming_state
        out = self._flush(state)
        self._streaming_state = self.init_streaming_state(out.shape[0])
        return out.unsqueeze(1)


class ISTFTHead(nn.Module):
    """Vocos output head: features -> log-magnitude and phase -> causal inverse STFT.

    ``[B, D, N] -> [B, 1, N * hop]``. The magnitude is ``exp`` of a clamped log-magnitude and the
    phase enters through ``cos``/``sin``, as in Vocos (Siuzdak 2023, section 3).
    """

    def __init__(self, dim: int, n_fft: int, hop_length: int):
        super().__init__()
        self.n_bins = n_fft // 2 + 1
        self.proj = nn.Linear(dim, 2 * self.n_bins)
        self.istft = CausalISTFT(n_fft, hop_length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_magnitude, phase = self.proj(x.transpose(1, 2)).transpose(1, 2).chunk(2, dim=1)
        magnitude = torch.exp(log_magnitude.clamp(max=math.log(1e2)))
        spec = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
        return self.istft(spec)
