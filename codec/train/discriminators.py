"""Discriminators and adversarial losses for the GAN fine-tuning stage (training only).

* Multi-period discriminator (HiFi-GAN, Kong et al. 2020): the waveform folded into
  ``[T / p, p]`` for several primes ``p``, 2-D convolutions along time.
* Multi-scale STFT discriminator (EnCodec, Défossez et al. 2022, section 3.4): 2-D convolutions
  over the real and imaginary parts of STFTs at several resolutions.

Each discriminator returns its logits and its intermediate feature maps (for feature matching).
Channel counts are kept small so that the stage runs on a CPU.
"""

import torch
import torch.nn.functional as F
from torch import nn


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, channels: int = 16):
        super().__init__()
        self.period = period
        widths = [1, channels, 4 * channels, 8 * channels, 16 * channels]
        self.convs = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], (5, 1), stride=(3, 1), padding=(2, 0)) for i in range(4))
        self.post = nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch, _, length = x.shape
        pad = (-length) % self.period
        x = F.pad(x, (0, pad), mode="reflect" if pad < length else "constant")
        x = x.view(batch, 1, -1, self.period)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            features.append(x)
        return self.post(x).flatten(1), features


class STFTDiscriminator(nn.Module):
    def __init__(self, n_fft: int, channels: int = 16):
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.convs = nn.ModuleList([
            nn.Conv2d(2, channels, (3, 9), padding=(1, 4)),
            nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(1, 1), padding=(1, 4)),
            nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(2, 1), padding=(2, 4)),
            nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(4, 1), padding=(4, 4)),
            nn.Conv2d(channels, channels, (3, 3), padding=(1, 1)),
        ])
        self.post = nn.Conv2d(channels, 1, (3, 3), padding=(1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(x.squeeze(1), self.n_fft, self.n_fft // 4, window=self.window, return_complex=True)
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # [B, 2, frames, bins]
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            features.append(x)
        return self.post(x).flatten(1), features


class Discriminators(nn.Module):
    """All sub-discriminators: ``forward(wav [B, 1, T]) -> (list of logits, list of feature lists)``."""

    def __init__(self, periods: list[int], stft_windows: list[int], channels: int = 16):
        super().__init__()
        self.members = nn.ModuleList([PeriodDiscriminator(p, channels) for p in periods]
                                     + [STFTDiscriminator(n, channels) for n in stft_windows])

    def forward(self, wav: torch.Tensor):
        outputs = [member(wav) for member in self.members]
        return [logits for logits, _ in outputs], [features for _, features in outputs]


def discriminator_hinge_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean()
               for r, f in zip(real_logits, fake_logits, strict=True)) / len(real_logits)


def generator_adversarial_loss(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    return sum(F.relu(1 - f).mean() for f in fake_logits) / len(fake_logits)


def feature_matching_loss(real_features: list[list[torch.Tensor]], fake_features: list[list[torch.Tensor]]):
    """Mean relative L1 distance of the feature maps (EnCodec's normalisation by the real map's scale)."""
    terms = [(r.detach() - f).abs().mean() / (r.detach().abs().mean() + 1e-5)
             for real, fake in zip(real_features, fake_features, strict=True)
             for r, f in zip(real, fake, strict=True)]
    return sum(terms) / len(terms)
