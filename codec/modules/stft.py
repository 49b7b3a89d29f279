"""Causal short-time Fourier transforms and the inverse-STFT output head (Vocos).

Causal framing: analysis frame ``i`` covers samples ``[(i + 1) * hop - n_fft, (i + 1) * hop)``,
so it ends where its hop ends and never looks ahead. Synthesis places frame ``i`` back on the
same span and overlap-adds, so sample ``t`` is final once the ``n_fft // hop - 1`` frames after
its own have been synthesized: that is the inverse transform's latency, ``n_fft - hop`` samples.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class CausalSTFT(nn.Module):
    """``[B, 1, N * hop] -> [B, n_fft // 2 + 1, N]`` complex spectrum with a periodic Hann window.

    Raises:
        ValueError: if the input length is not a whole number of hops.
    """

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.hop_length:
            raise ValueError(f"input length {x.shape[-1]} is not a multiple of hop {self.hop_length}")
        x = F.pad(x.squeeze(1), (self.n_fft - self.hop_length, 0))
        return torch.stft(x, self.n_fft, self.hop_length, window=self.window, center=False,
                          return_complex=True)


class CausalISTFT(nn.Module):
    """``[B, n_fft // 2 + 1, N]`` complex spectrum -> ``[B, 1, N * hop]`` waveform.

    Weighted overlap-add normalised by the summed squared window. The last ``n_fft - hop``
    output samples lack the frames that would follow them; they are normalised by the partial
    window sum (floored at ``envelope_floor`` of the full sum), which tapers the very end.
    """

    def __init__(self, n_fft: int, hop_length: int, envelope_floor: float = 0.1):
        super().__init__()
        if n_fft % hop_length:
            raise ValueError("n_fft must be a multiple of hop_length")
        self.n_fft = n_fft
        self.hop_length = hop_length
        window = torch.hann_window(n_fft)
        self.register_buffer("window", window, persistent=False)
        full_envelope = float(window.pow(2).sum()) / (n_fft // hop_length)
        self.envelope_floor = envelope_floor * full_envelope

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        num_frames = spec.shape[-1]
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=1) * self.window[:, None]  # [B, n_fft, N]
        length = (num_frames - 1) * self.hop_length + self.n_fft
        fold = dict(output_size=(1, length), kernel_size=(1, self.n_fft), stride=(1, self.hop_length))
        y = F.fold(frames, **fold).flatten(1)
        envelope = F.fold(self.window.pow(2)[None, :, None].expand(1, -1, num_frames), **fold).flatten(1)
        start = self.n_fft - self.hop_length
        y = y[:, start:] / envelope[:, start:].clamp(min=self.envelope_floor)
        return y.unsqueeze(1)


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
