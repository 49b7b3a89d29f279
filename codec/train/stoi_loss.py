"""A differentiable STOI (Taal et al., "An algorithm for intelligibility prediction of
time-frequency weighted noisy speech", IEEE TASLP 2011), used as a training loss as in Kolbæk et
al., "Monaural speech enhancement using deep neural networks by maximizing a short-time objective
intelligibility measure", ICASSP 2018.

What STOI scores and a log-mel L1 loss does not: within each 384 ms segment and one-third-octave
band, how well the output's envelope follows the input's (a correlation, so blind to a band's
level), with the output first scaled to the input's energy and clipped at 15 dB above it.

Simplified from STOI, and so a proxy in its own units (measure with the `pystoi` package):
- no resampling to 10 kHz: frames, hops and bins keep STOI's durations and frequencies at the
  input's own sample rate (a 25.6 ms frame, half overlapping; 15 bands from 150 Hz);
- silent frames (40 dB below the input's loudest) are dropped from the STFT frames, where STOI
  drops them from the waveform and overlap-adds the rest before its STFT.
"""

import numpy as np
import torch
from torch import nn

FRAME_SECONDS = 0.0256  # STOI's 256 samples at 10 kHz, half overlapping
BANDS, LOWEST_CENTRE_HZ = 15, 150.0  # one-third-octave bands
SEGMENT_FRAMES = 30     # 384 ms: the envelope segment that is correlated
CLIP_DB = 15.0          # the output may exceed the input by this much in a band before clipping (-beta)
SILENCE_DB = 40.0       # frames this far below the input's loudest frame are dropped


class StoiLoss(nn.Module):
    """``1 - d``, with ``d`` STOI's mean envelope correlation, averaged over items: 0 for identical
    inputs, ~0.05-0.1 for a codec at 6 kbps, up to 2 in principle.

    Args:
        sample_rate: in Hz, at least 9000 (the top band reaches 4.3 kHz).

    Inputs ``y_hat, y: [B, 1, T]`` (output, reference); T must give the reference at least
    ``SEGMENT_FRAMES`` (30) frames, 0.4 s; an item with fewer frames above the silence threshold is
    scored on all its frames. Returns a scalar.

    Raises:
        ValueError: a sample rate under 9000 Hz, or inputs shorter than one segment.
    """

    def __init__(self, sample_rate: int):
        super().__init__()
        if sample_rate < 9000:
            raise ValueError(f"the STOI loss needs a sample rate of at least 9000 Hz, not {sample_rate}")
        self.sample_rate = sample_rate
        self.frame = frame = round(FRAME_SECONDS * sample_rate)
        self.n_fft = n_fft = 2 ** int(np.ceil(np.log2(2 * frame)))  # STOI zero-pads frames to twice their length
        hz = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
        centres = LOWEST_CENTRE_HZ * 2.0 ** (np.arange(BANDS) / 3.0)
        low, high = centres * 2.0 ** (-1.0 / 6.0), centres * 2.0 ** (1.0 / 6.0)
        # each bin in the band whose edges are nearest, as pystoi's thirdoct
        low_bins = np.abs(hz[None, :] - low[:, None]).argmin(axis=1)
        high_bins = np.abs(hz[None, :] - high[:, None]).argmin(axis=1)
        membership = np.zeros((BANDS, len(hz)))
        for band, (first, last) in enumerate(zip(low_bins, high_bins, strict=True)):
            membership[band, first:last] = 1.0
        self.register_buffer("bins_to_band", torch.from_numpy(membership).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(frame + 2, periodic=False)[1:-1], persistent=False)
        self.clip = 1.0 + 10.0 ** (CLIP_DB / 20.0)

    @staticmethod
    def min_samples(sample_rate: int) -> int:
        """The shortest input, in samples, that gives one segment of frames."""
        frame = round(FRAME_SECONDS * sample_rate)
        return frame + (SEGMENT_FRAMES - 1) * (frame // 2)

    def band_envelopes(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T] -> [B, bands, frames]``: magnitude per one-third-octave band and frame."""
        if x.shape[-1] < self.min_samples(self.sample_rate):
            raise ValueError(f"the STOI loss needs inputs of at least {self.min_samples(self.sample_rate)} "
                             f"samples ({SEGMENT_FRAMES} frames), not {x.shape[-1]}")
        frames = x.squeeze(1).float().unfold(-1, self.frame, self.frame // 2) * self.window  # [B, frames, frame]
        spec = torch.fft.rfft(frames, n=self.n_fft)
        power = spec.real.pow(2) + spec.imag.pow(2)
        return (power @ self.bins_to_band.T).add(1e-12).sqrt().transpose(1, 2)

    def _audible(self, y: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T] -> [B, frames]`` bool: the reference's frames within 40 dB of its loudest."""
        frames = y.squeeze(1).float().unfold(-1, self.frame, self.frame // 2) * self.window
        energy_db = 20.0 * torch.log10(frames.norm(dim=-1) + 1e-10)
        return energy_db > energy_db.amax(dim=-1, keepdim=True) - SILENCE_DB

    def correlation(self, env_hat: torch.Tensor, env: torch.Tensor) -> torch.Tensor:
        """``[bands, frames]`` envelopes of one item -> its STOI ``d``, a scalar."""
        seg_hat = env_hat.unfold(-1, SEGMENT_FRAMES, 1)  # [bands, segments, 30]
        seg = env.unfold(-1, SEGMENT_FRAMES, 1)
        # the output scaled to the input's energy, by at most 60 dB: a silent output's gradient stays
        # finite (as a level-blind score, the gradient grows as 1 / the output's level; training
        # crops are levelled to -35..-15 dBFS)
        norm = seg.norm(dim=-1, keepdim=True)
        scale = norm / torch.maximum(seg_hat.norm(dim=-1, keepdim=True), 1e-3 * norm).clamp(min=1e-8)
        seg_hat = torch.minimum(seg_hat * scale, seg * self.clip)
        seg_hat = seg_hat - seg_hat.mean(dim=-1, keepdim=True)
        seg = seg - seg.mean(dim=-1, keepdim=True)
        cosine = (seg_hat * seg).sum(dim=-1) / (seg_hat.norm(dim=-1) * seg.norm(dim=-1) + 1e-8)
        return cosine.mean()

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        env_hat, env = self.band_envelopes(y_hat), self.band_envelopes(y)
        with torch.no_grad():
            audible = self._audible(y)
        scores = []
        for item in range(y.shape[0]):
            keep = audible[item] if int(audible[item].sum()) >= SEGMENT_FRAMES else torch.ones_like(audible[item])
            scores.append(self.correlation(env_hat[item][:, keep], env[item][:, keep]))
        return 1.0 - torch.stack(scores).mean()
