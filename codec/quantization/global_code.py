"""Time-invariant codes (TiCodec: "Fewer-token Neural Speech Codec with Time-invariant Codes",
Ren et al. 2024).

What does not change over an utterance (speaker, timbre, channel) is summarised once into a
small grouped-VQ code, sent once per stream, and added back to the latent of every frame; the
frame codes then only carry what changes. Training adds TiCodec's consistency loss: two segments
of the same utterance must give the same summary.

    latent [B, D, F] -> 1x1 conv, GELU -> mean over frames -> linear -> g [B, Dg]
    g -> G groups of Dg/G channels, each a factorized VQ -> codes [B, G]
    codes -> group entries [B, Dg] -> linear -> embedding [B, D, 1] (added to every frame's latent)

The model may also condition its decoder on the group entries (``ConvCodecConfig.global_film``).
"""

import torch
import torch.nn.functional as F
from torch import nn

from codec.errors import CodecError
from codec.quantization.vq import FactorizedVectorQuantizer


class GlobalCode(nn.Module):
    """One grouped-VQ code per utterance (per channel of a file).

    Args:
        latent_dim: channels ``D`` of the codec's latent.
        global_dim: channels ``Dg`` of the summary.
        groups: ``G`` codebooks of the grouped VQ (``G * log2(codebook_size)`` bits per utterance).
        codebook_size: entries per group codebook.
        codebook_dim: lookup dimension of each group's factorized VQ.

    Raises:
        CodecError: if ``groups`` does not divide ``global_dim``.
    """

    def __init__(self, latent_dim: int, global_dim: int, groups: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        if global_dim % groups:
            raise CodecError(f"global_groups={groups} must divide global_dim={global_dim}")
        self.groups = groups
        self.frame_proj = nn.Conv1d(latent_dim, global_dim, 1)
        self.summary_proj = nn.Linear(global_dim, global_dim)
        self.quantizers = nn.ModuleList(
            FactorizedVectorQuantizer(global_dim // groups, codebook_size, codebook_dim) for _ in range(groups))
        self.embed_proj = nn.Linear(global_dim, latent_dim)

    def summarize(self, latent: torch.Tensor) -> torch.Tensor:
        """``latent [B, D, F]`` (F >= 1) -> continuous summary ``[B, Dg]``."""
        return self.summary_proj(F.gelu(self.frame_proj(latent)).mean(dim=-1))

    def _groups(self, summary: torch.Tensor) -> list[torch.Tensor]:
        """``[B, Dg]`` -> G tensors ``[B, Dg/G, 1]`` (one frame each, as the VQs expect)."""
        return [part[:, :, None] for part in summary.chunk(self.groups, dim=-1)]

    @torch.no_grad()
    def encode(self, latent: torch.Tensor) -> torch.Tensor:
        """``latent [B, D, F]`` -> ``codes [B, G]`` int64."""
        parts = self._groups(self.summarize(latent))
        return torch.stack([vq.encode(part)[:, 0] for vq, part in zip(self.quantizers, parts, strict=True)], dim=1)

    def entries(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [B, G]`` -> the quantized summary ``[B, Dg]`` (the groups' codebook entries)."""
        return torch.cat([vq.decode(codes[:, g:g + 1])[:, :, 0] for g, vq in enumerate(self.quantizers)], dim=-1)

    def embedding(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [B, G]`` -> ``[B, D, 1]``, to add to every frame's latent."""
        return self.embed_proj(self.entries(codes))[:, :, None]

    def forward(self, latent: torch.Tensor):
        """Training pass on ``latent [B, D, F]``.

        Returns:
            ``(embedding [B, D, 1], entries [B, Dg], codes [B, G], commitment_loss, codebook_loss,
            consistency_loss)``, where ``entries`` is the quantized summary (straight-through) and
            the consistency loss is the mean squared difference between the summaries of
            the first and the second half of each item (TiCodec's time-invariance constraint).
        """
        summary = self.summarize(latent)
        half = latent.shape[-1] // 2
        if half >= 1:
            first, second = self.summarize(latent[..., :half]), self.summarize(latent[..., half:])
            consistency = (first - second).pow(2).mean()
        else:
            consistency = summary.new_zeros(())
        active = torch.ones(latent.shape[0], device=latent.device)
        quantized, codes, commitment, codebook = [], [], summary.new_zeros(()), summary.new_zeros(())
        for vq, part in zip(self.quantizers, self._groups(summary), strict=True):
            q, c, commitment_g, codebook_g = vq(part, active)
            quantized.append(q[:, :, 0])
            codes.append(c[:, 0])
            commitment, codebook = commitment + commitment_g, codebook + codebook_g
        entries = torch.cat(quantized, dim=-1)
        return self.embed_proj(entries)[:, :, None], entries, torch.stack(codes, dim=1), commitment, codebook, \
            consistency
