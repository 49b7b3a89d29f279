"""A differentiable STOI (Taal et al., "An algorithm for intelligibility prediction of
time-frequency weighted noisy speech", IEEE TASLP 2011), used as a training loss as in Kolbæk et
al., "Monaural speech enhancement using deep neural networks by maximizing a short-time objective
intelligibility measure", ICASSP 2018.

What STOI scores and a log-mel L1 loss does not: within each 384 ms segment and one-third-octave
band, how well the output's envelope follows the input's (a correlation, so blind to a band's
level). The output is first scaled to the input's energy, and its distortion (output minus input)
clipped at 15 dB above the input, so that one loud error does not decide a segment.

Simplified from STOI (as pystoi computes it), and so a proxy in its own units (measure with the
`pystoi` package):
- no resampling to 10 kHz: frames, hops and bins keep STOI's durations and frequencies at the
  input's own sample rate (a 25.6 ms frame, half overlapping, zero-padded to twice its length;
  15 bands from 150 Hz); silence is judged on the band below 5 kHz, which is what STOI hears;
- silent frames (40 dB below the input's loudest) are dropped from the STFT frames, where STOI
  drops them from the waveform and overlap-adds the rest before its STFT;
- an item with fewer than 30 frames above the silence threshold is scored on all its frames
  (STOI gives up on it), and a frame that ends on the input's last sample counts (STOI's does not).
"""

import numpy as np
import torch
from torch import nn

FRAME_SECONDS = 0.0256  # STOI's 256 samples at 10 kHz, half overlapping
BANDS, LOWEST_CENTRE_HZ = 15, 150.0  # one-third-octave bands
SEGMENT_FRAMES = 30     # 384 ms: the envelope segment that is correlated
CLIP_DB = 15.0          # the distortion may reach this much above the input in a band before clipping (-beta)
SILENCE_DB = 40.0       # frames this far below the input's loudest frame are dropped
AUDIBLE_HZ = 5000.0     # STOI's Nyquist frequency: sound above it does not count against silence


class StoiLoss(nn.Module):
    """``1 - d``, with ``d`` STOI's mean envelope correlation, averaged over items: 0 for identical
    inputs, ~0.05-0.1 for a codec at 6 kbps, up to 2 in principle. Level-blind, so its gradient
    grows as 1 / the output's level (training crops are levelled to -35..-15 dBFS).

    Args:
        sample_rate: in Hz, at least 9000 (the top band reaches 4.3 kHz).

    Inputs ``y_hat, y: [B, 1, T]`` (output, reference); T at least ``min_samples(sample_rate)``
    (30 frames, 0.4 s). Returns a scalar.

    Raises:
        ValueError: a sample rate under 9000 Hz, or inputs shorter than one segment.
    """

    def __init__(self, sample_rate: int):
        super().__init__()
        if sample_rate < 9000:
            raise ValueError(f"the STOI loss needs a sample rate of at least 9000 Hz, not {sample_rate}")
        self.sample_rate = sample_rate
        self.frame = frame = round(FRAME_SECONDS * sample_rate)
        self.n_fft = n_fft = 2 * frame
        hz = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
        centres = LOWEST_CENTRE_HZ * 2.0 ** (np.arange(BANDS) / 3.0)
        low, high = centres * 2.0 ** (-1.0 / 6.0), centres * 2.0 ** (1.0 / 6.0)
        # bins from the one nearest a band's lower edge up to (without) the one nearest its upper
        # edge, as pystoi's thirdoct
        low_bins = np.abs(hz[None, :] - low[:, None]).argmin(axis=1)
        high_bins = np.abs(hz[None, :] - high[:, None]).argmin(axis=1)
        membership = np.zeros((BANDS, len(hz)))
        for band, (first, last) in enumerate(zip(low_bins, high_bins, strict=True)):
            membership[band, first:last] = 1.0
        self.register_buffer("bins_to_band", torch.from_numpy(membership).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(frame + 2, periodic=False)[1:-1], persistent=False)
        self.audible_bins = int(np.sum(hz <= AUDIBLE_HZ))
        self.clip = 1.0 + 10.0 ** (CLIP_DB / 20.0)

    @staticmethod
    def min_samples(sample_rate: int) -> int:
        """The shortest input, in samples, that gives one segment of frames."""
        frame = round(FRAME_SECONDS * sample_rate)
        return frame + (SEGMENT_FRAMES - 1) * (frame // 2)

    def power_spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T] -> [B, frames, bins]``: the power of each windowed frame."""
        if x.shape[-1] < self.min_samples(self.sample_rate):
            raise ValueError(f"the STOI loss needs inputs of at least {self.min_samples(self.sample_rate)} "
                             f"samples ({SEGMENT_FRAMES} frames), not {x.shape[-1]}")
        frames = x.squeeze(1).float().unfold(-1, self.frame, self.frame // 2) * self.window
        spec = torch.fft.rfft(frames, n=self.n_fft)
        return spec.real.pow(2) + spec.imag.pow(2)

    def band_envelopes(self, power: torch.Tensor) -> torch.Tensor:
        """``[B, frames, bins]`` power -> ``[B, bands, frames]`` magnitude per one-third-octave band."""
        return (power @ self.bins_to_band.T).add(1e-12).sqrt().transpose(1, 2)

    def audible(self, power: torch.Tensor) -> torch.Tensor:
        """``[B, frames, bins]`` power of the reference -> ``[B, frames]`` bool: the frames within
        40 dB of its loudest, below 5 kHz."""
        energy_db = 10.0 * torch.log10(power[..., :self.audible_bins].sum(dim=-1) + 1e-20)
        return energy_db > energy_db.amax(dim=-1, keepdim=True) - SILENCE_DB

    def correlation(self, env_hat: torch.Tensor, env: torch.Tensor) -> torch.Tensor:
        """``[bands, frames]`` envelopes of one item (output, reference) -> its STOI ``d``, a scalar."""
        seg_hat = env_hat.unfold(-1, SEGMENT_FRAMES, 1)  # [bands, segments, 30]
        seg = env.unfold(-1, SEGMENT_FRAMES, 1)
        scale = seg.norm(dim=-1, keepdim=True) / (seg_hat.norm(dim=-1, keepdim=True) + 1e-8)
        seg_hat = torch.minimum(seg_hat * scale, seg * self.clip)
        seg_hat = seg_hat - seg_hat.mean(dim=-1, keepdim=True)
        seg = seg - seg.mean(dim=-1, keepdim=True)
        cosine = (seg_hat * seg).sum(dim=-1) / (seg_hat.norm(dim=-1) * seg.norm(dim=-1) + 1e-8)
        return cosine.mean()

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        power = self.power_spectrum(y)
        env_hat, env = self.band_envelopes(self.power_spectrum(y_hat)), self.band_envelopes(power)
        with torch.no_grad():
            audible = self.audible(power)
        scores = []
        for item in range(y.shape[0]):
            keep = audible[item] if int(audible[item].sum()) >= SEGMENT_FRAMES else torch.ones_like(audible[item])
            scores.append(self.correlation(env_hat[item][:, keep], env[item][:, keep]))
        return 1.0 - torch.stack(scores).mean()
