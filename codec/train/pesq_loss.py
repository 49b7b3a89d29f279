"""A differentiable loss after PESQ's perceptual model (ITU-T P.862; Rix et al., "Perceptual
evaluation of speech quality (PESQ)", ICASSP 2001), used as a training loss as in Martín-Doñas et
al., "A deep learning loss function based on the perceptual evaluation of the speech quality",
IEEE SPL 2018.

What PESQ scores and a log-mel L1 loss does not: loudness grows as power^0.23 (Zwicker) and is 0
below the hearing threshold, so quiet bins and pauses weigh little; a dead zone forgives a quarter
of the smaller loudness (level changes under ~4 dB in a band); energy the output adds weighs more
than energy it drops (the asymmetric disturbance); and the worst moments weigh most (an L6 norm
over spans of 20 frames, then L2 over spans).

Simplified from P.862, and so a proxy in its own units (measure with the `pesq` package):
- no time alignment and no IRS filter (bins below 100 Hz are left out, as wide-band PESQ's filter
  does); no frequency-response or gain-variation compensation (the other losses already ask for
  the input's spectrum and level); no down-weighting of frames where the reference is quiet and no
  cap on a frame's disturbance;
- each item is levelled by its whole RMS (P.862 uses 350-3250 Hz) and taken to play at 65 dB SPL;
  items quieter than -80 dBFS are not raised further;
- Bark bands (Traunmüller), hearing thresholds (Terhardt) and a fixed loudness exponent from
  textbook formulas rather than P.862's tables (P.862 raises the exponent a little below 4 Bark);
- the asymmetry ratio adds each band's hearing threshold to both powers where P.862 adds a
  constant 50 in its own units, and passes no gradient (it weighs the disturbance).
"""

import numpy as np
import torch
from torch import nn

LISTENING_LEVEL_DB = 65.0  # dB SPL that an item's RMS is taken to play at (conversational speech)
QUIETEST_RMS = 1e-4        # -80 dBFS: quieter items are not raised to the listening level
GAMMA = 0.23               # Zwicker's loudness exponent, as P.862 uses above 4 Bark
DEAD_ZONE = 0.25           # share of the smaller loudness that is not heard as a difference
SYMMETRIC_WEIGHT, ASYMMETRIC_WEIGHT = 0.1, 0.0309  # P.862's raw-score weights
SPAN_FRAMES = 20           # frames per span of the L6 norm (320 ms at 16 kHz)


def frame_length(sample_rate: int) -> int:
    """PESQ's 32 ms frame as the nearest power of two of samples: 256 at 8 kHz, 512 at 16 kHz
    (as PESQ), 1024 (42.7 ms) at 24 kHz."""
    return 2 ** round(np.log2(0.032 * sample_rate))


def _bark(hz: np.ndarray) -> np.ndarray:
    """Traunmüller's Bark scale."""
    return 26.81 * hz / (1960.0 + hz) - 0.53


def _hearing_threshold_db(hz: np.ndarray) -> np.ndarray:
    """Terhardt's absolute threshold of hearing in dB SPL."""
    khz = np.maximum(hz, 20.0) / 1000.0
    return 3.64 * khz ** -0.8 - 6.5 * np.exp(-0.6 * (khz - 3.3) ** 2) + 1e-3 * khz ** 4


def disturbance_density(loud_hat: torch.Tensor, loud: torch.Tensor) -> torch.Tensor:
    """P.862's disturbance density: the loudness difference less a dead zone of a quarter of the
    smaller loudness, 0 within it. Any matching shapes (sone per band); the result is >= 0."""
    return torch.relu((loud_hat - loud).abs() - DEAD_ZONE * torch.minimum(loud_hat, loud))


def over_time(frames: torch.Tensor) -> torch.Tensor:
    """``[B, frames] -> [B]``: L6 over spans of 20 frames (half overlapping), then L2 over spans.
    The last span is filled with zeros, as P.862 divides a partial span by 20 too."""
    span, hop, count = SPAN_FRAMES, SPAN_FRAMES // 2, frames.shape[-1]
    missing = span - count if count < span else -(count - span) % hop
    spans = nn.functional.pad(frames, (0, missing)).unfold(-1, span, hop)
    peak = spans.detach().amax(dim=-1, keepdim=True).clamp(min=1e-8)  # no eps can bias a 6th root
    worst = peak.squeeze(-1) * (spans / peak).pow(6).mean(dim=-1).add(1e-12).pow(1.0 / 6.0)
    return worst.pow(2).mean(dim=-1).add(1e-12).sqrt()


class PesqDisturbanceLoss(nn.Module):
    """``0.1 * symmetric + 0.0309 * asymmetric`` disturbance, averaged over items (P.862's raw
    score is 4.5 minus a disturbance of this form); ~0 for identical inputs.

    Args:
        sample_rate: in Hz, at least 8000. Frames are ``frame_length(sample_rate)`` samples with a
            hop of half a frame.
        bands: Bark bands between 100 Hz and the Nyquist frequency (49, as wide-band PESQ, gives
            49 at 16 kHz); bands narrower than a frequency bin are dropped.

    Inputs ``y_hat, y: [B, 1, T]`` (output, reference; T at least half a frame plus one); returns
    a scalar. An all-silent output gets no gradient from it (the other losses supply one).

    Raises:
        ValueError: a sample rate under 8000 Hz, or inputs shorter than half a frame plus one.
    """

    def __init__(self, sample_rate: int, bands: int = 49):
        super().__init__()
        if sample_rate < 8000:
            raise ValueError(f"the PESQ loss needs a sample rate of at least 8000 Hz, not {sample_rate}")
        self.n_fft = n_fft = frame_length(sample_rate)
        hz = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
        edges = np.linspace(_bark(np.array(100.0)), _bark(np.array(sample_rate / 2)), bands + 1)
        band_of_bin = np.digitize(_bark(hz), edges) - 1
        in_range = (hz >= 100.0) & (band_of_bin >= 0) & (band_of_bin < bands)
        rows = [np.where(in_range & (band_of_bin == b), 1.0, 0.0) for b in range(bands)]
        membership = np.stack([row for row in rows if row.any()])
        centres = (membership @ hz) / membership.sum(axis=1)
        threshold = 10.0 ** (_hearing_threshold_db(centres) / 10.0)
        window = torch.hann_window(n_fft)
        # one-sided power of a unit-RMS signal sums to ~1 per frame; then SPL at the listening level
        to_spl = 2.0 / (n_fft * window.pow(2).sum().item()) * 10.0 ** (LISTENING_LEVEL_DB / 10.0)
        # loudness in sone: 40 dB SPL at 1 kHz, all in one band, reads 1
        threshold_1k = 10.0 ** (_hearing_threshold_db(np.array(1000.0)) / 10.0)
        sone = (threshold_1k / 0.5) ** GAMMA * ((0.5 + 0.5 * 1e4 / threshold_1k) ** GAMMA - 1.0)
        self.register_buffer("bins_to_band_spl", torch.from_numpy(membership).float() * to_spl, persistent=False)
        self.register_buffer("threshold", torch.from_numpy(threshold).float()[:, None], persistent=False)
        self.register_buffer("window", window, persistent=False)
        self.loudness_scale = 1.0 / sone

    def band_power(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T] -> [B, bands, frames]`` Bark-band power in linear SPL units (1 = 0 dB SPL),
        each item levelled to the listening level first."""
        if x.shape[-1] <= self.n_fft // 2:
            raise ValueError(f"the PESQ loss needs inputs longer than {self.n_fft // 2} samples, "
                             f"not {x.shape[-1]}")
        x = x.squeeze(1).float()
        x = x / x.pow(2).mean(dim=-1, keepdim=True).clamp(min=QUIETEST_RMS ** 2).sqrt()
        spec = torch.stft(x, self.n_fft, self.n_fft // 2, window=self.window, return_complex=True)
        return self.bins_to_band_spl @ (spec.real.pow(2) + spec.imag.pow(2))

    def loudness(self, power: torch.Tensor) -> torch.Tensor:
        """``[B, bands, frames]`` power (as ``band_power``) -> Zwicker's loudness density in sone
        per band, 0 at and below the hearing threshold."""
        p0 = self.threshold
        curve = (p0 / 0.5) ** GAMMA * ((0.5 + 0.5 * power / p0) ** GAMMA - 1.0)
        return self.loudness_scale * curve.clamp(min=0.0)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        power_hat, power = self.band_power(y_hat), self.band_power(y)
        disturbance = disturbance_density(self.loudness(power_hat), self.loudness(power))
        with torch.no_grad():  # the asymmetric term counts added energy only: ratios of 3 up, at most 12
            ratio = ((power_hat + self.threshold) / (power + self.threshold)) ** 1.2
            asymmetry = torch.where(ratio < 3.0, torch.zeros_like(ratio), ratio.clamp(max=12.0))
        symmetric = disturbance.pow(2).mean(dim=1).add(1e-12).sqrt()   # [B, frames]: L2 over bands
        asymmetric = (disturbance * asymmetry).mean(dim=1)            # L1 over bands
        per_item = SYMMETRIC_WEIGHT * over_time(symmetric) + ASYMMETRIC_WEIGHT * over_time(asymmetric)
        return per_item.mean()
