"""Factorized, L2-normalised vector quantizer (Improved RVQGAN / DAC, Kumar et al. 2023, sec. 3.2).

Each latent vector is projected to a low-dimensional space (``codebook_dim``, e.g. 8), normalised
to unit length and matched to the nearest unit-length codebook entry by cosine similarity; the
chosen entry is projected back. Low-dimensional normalised lookups keep most entries in use.

Codebook health during training ("Online Clustered Codebook", Zheng & Vedaldi 2023):
  * data-driven initialisation: the first training batch seeds the codebook with its own vectors;
  * dead-code re-seeding: an entry whose running usage falls below ``dead_usage`` is replaced by a
    random vector of the current batch.
Under distributed training, usage counts are summed over ranks (so every rank sees the same
usage and re-seeds the same entries) and the codebook is broadcast from rank 0 after any change.

Gradient to the encoder: straight through (VQ-VAE, van den Oord et al. 2017: the decoder's gradient
at the entry is copied to the latent), or the rotation trick (Fifty et al. 2024, "Restructuring
Vector Quantization with the Rotation Trick"): the entry is written as a rotation of the latent, the
rotation held constant, so the gradient reaches the latent rotated by the angle between the two.
"""

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

GRADIENTS = ("straight_through", "rotation")


def rotation_trick(e: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``q``'s value with the gradient of ``R e``, ``R`` the rotation taking ``e`` onto ``q``.

    ``e`` and ``q`` are ``[..., d]`` unit vectors (the lookup space's latents and their entries).
    ``R = I - 2 r r^T + 2 q e^T`` with ``r = (e + q) / |e + q|``, built from detached copies, so
    ``d loss / d e = R^T d loss / d q`` (Fifty et al. 2024, sec. 4.2; both have unit length, so no
    rescaling). The value is set to ``q`` exactly, which also covers the undefined case ``e = -q``.
    """
    e_hat, q_hat = e.detach(), q.detach()
    r = F.normalize(e_hat + q_hat, dim=-1)
    rotated = (e - 2 * (e * r).sum(-1, keepdim=True) * r
               + 2 * (e * e_hat).sum(-1, keepdim=True) * q_hat)
    return rotated + (q_hat - rotated).detach()


class FactorizedVectorQuantizer(nn.Module):
    """One codebook of ``codebook_size`` unit vectors of dimension ``codebook_dim``.

    Args:
        dim: channels ``D`` of the latent it quantizes.
        codebook_size: number of entries (1024 gives 10-bit codes).
        codebook_dim: dimension of the normalised lookup space.
        usage_decay: decay of the running per-entry usage count (per training step).
        dead_usage: running usage below which an entry is re-seeded.
        channels: ``(start, stop)`` to see and write only those latent channels (masked-channel
            RVQ, "Language-Codec", Ji et al. 2024); ``None`` for all of them.

    ``gradient`` (one of ``GRADIENTS``, set by training from ``loss.vq_gradient``) picks how the
    encoder's gradient crosses the lookup; it changes nothing else.
    """

    gradient = "straight_through"

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int,
                 usage_decay: float = 0.99, dead_usage: float = 0.01, channels: tuple[int, int] | None = None):
        super().__init__()
        self.codebook_size = codebook_size
        # masked-channel quantizer (Language-Codec's MCRVQ): it reads and writes only the latent
        # channels [start, stop); the mask is derived from the config, not stored with the weights
        mask = torch.ones(dim)
        if channels is not None:
            mask.zero_()[channels[0]:channels[1]] = 1.0
        self.register_buffer("channel_mask", mask, persistent=False)
        self.in_proj = nn.Linear(dim, codebook_dim)
        self.out_proj = nn.Linear(codebook_dim, dim)
        self.codebook = nn.Parameter(torch.randn(codebook_size, codebook_dim))
        self.usage_decay = usage_decay
        self.dead_usage = dead_usage
        self.register_buffer("initialized", torch.tensor(False))
        self.register_buffer("usage", torch.ones(codebook_size))

    def _lookup_space(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, D, F] -> [B, F, codebook_dim]`` unit vectors."""
        return F.normalize(self.in_proj((z * self.channel_mask[:, None]).transpose(1, 2)), dim=-1)

    def _nearest(self, e: torch.Tensor) -> torch.Tensor:
        """``[B, F, d]`` unit vectors -> ``[B, F]`` indices of the most similar entries."""
        return (e @ F.normalize(self.codebook, dim=-1).t()).argmax(dim=-1)

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, D, F]`` latent -> ``[B, F]`` int64 codes."""
        return self._nearest(self._lookup_space(z))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``[B, F]`` codes -> ``[B, D, F]`` quantized latent."""
        entries = F.embedding(codes, F.normalize(self.codebook, dim=-1))
        return (self.out_proj(entries) * self.channel_mask).transpose(1, 2)

    def forward(self, z: torch.Tensor, active: torch.Tensor):
        """Quantize, with the gradient to ``z`` that ``self.gradient`` names.

        Args:
            z: ``[B, D, F]`` latent (the residual left by earlier quantizers).
            active: ``[B]`` float, 1 where this quantizer is in use for that item (quantizer
                dropout), 0 where it is dropped; dropped items add nothing to the losses.

        Returns:
            ``(quantized [B, D, F], codes [B, F], commitment_loss, codebook_loss)``.
        """
        e = self._lookup_space(z)
        if self.training:
            self._train_codebook_health(e, active)
        codes = self._nearest(e)
        q = F.embedding(codes, F.normalize(self.codebook, dim=-1))
        weight = active[:, None, None].expand_as(e)
        denominator = weight.sum().clamp(min=1.0)
        commitment_loss = ((e - q.detach()).pow(2) * weight).sum() / denominator
        codebook_loss = ((q - e.detach()).pow(2) * weight).sum() / denominator
        q = rotation_trick(e, q) if self.gradient == "rotation" else e + (q - e).detach()
        return (self.out_proj(q) * self.channel_mask).transpose(1, 2), codes, commitment_loss, codebook_loss

    # data-dependent bookkeeping (first-batch init, usage counts, dead-code revival): run.compile
    # leaves it out of its graphs (keep_bookkeeping_out_of_graphs)
    @torch.no_grad()
    def _train_codebook_health(self, e: torch.Tensor, active: torch.Tensor) -> None:
        vectors = e[active > 0].reshape(-1, e.shape[-1])
        distributed = dist.is_available() and dist.is_initialized()
        if len(vectors) == 0 and not distributed:
            return
        changed = not bool(self.initialized)   # the same on every rank, as is everything below
        if changed and len(vectors):
            pick = torch.randint(len(vectors), (self.codebook_size,), device=e.device)
            self.codebook.data.copy_(vectors[pick] + 1e-3 * torch.randn_like(vectors[pick]))
        self.initialized.fill_(True)
        counts = torch.bincount(self._nearest(vectors), minlength=self.codebook_size).float()
        if distributed:
            dist.all_reduce(counts)
            counts /= dist.get_world_size()
        self.usage.mul_(self.usage_decay).add_(counts, alpha=1 - self.usage_decay)
        dead = torch.nonzero(self.usage < self.dead_usage).flatten()
        if len(dead):
            if len(vectors):
                pick = torch.randint(len(vectors), (len(dead),), device=e.device)
                self.codebook.data[dead] = vectors[pick]
            self.usage[dead] = 1.0
            changed = True
        if distributed and changed:  # every rank takes rank 0's entries
            dist.broadcast(self.codebook.data, src=0)

    def perplexity(self) -> float:
        """Perplexity of the running usage distribution: ``codebook_size`` when all are used evenly."""
        p = self.usage / self.usage.sum().clamp(min=1e-12)
        return float(torch.exp(-(p * torch.log(p.clamp(min=1e-12))).sum()))


def keep_bookkeeping_out_of_graphs() -> None:
    """Run the quantizers' codebook bookkeeping (first-batch init, usage counts, dead-code
    revival) outside ``torch.compile``'s graphs (``torch.compiler.disable``), rather than breaking
    them at each of its ``.item()`` calls with a dozen lines of warnings. Outside a compiled graph
    it runs as before.

    Called when a training run compiles, not applied as a decorator: the decorator imports
    ``torch._dynamo`` with this module, which added 1-1.5 s to every ``codec`` command's start.
    It replaces the class's method (once), so models stay free of per-instance patches that a
    deep copy or pickle would trip on.
    """
    method = FactorizedVectorQuantizer._train_codebook_health
    if not getattr(method, "_kept_out_of_graphs", False):
        disabled = torch.compiler.disable(method)
        disabled._kept_out_of_graphs = True
        FactorizedVectorQuantizer._train_codebook_health = disabled


@torch.no_grad()
def widen_lookup(narrow: FactorizedVectorQuantizer, wide: FactorizedVectorQuantizer,
                 new_input_scale: float = 0.1) -> None:
    """Copy a trained quantizer into ``wide``, whose lookup space has more dimensions, so that it
    chooses the same codes and gives the same output ("Net2Net" widening, Chen et al. 2016).

    The narrow entries are padded with zeros, so the cosine ranking is unchanged (the new input
    dimensions only rescale every similarity alike) and the chosen entries project back through
    the old output columns alone. The new input rows start at ``new_input_scale`` times ``wide``'s
    own initialisation (a small share of the lookup vector), the new output columns as initialised,
    so the decoder's gradient reaches the new dimensions once the codebook grows into them.

    Raises:
        ValueError: if ``wide`` is not wider than ``narrow`` or differs in anything else.
    """
    d, wide_d = narrow.codebook.shape[1], wide.codebook.shape[1]
    if wide_d <= d or narrow.codebook_size != wide.codebook_size \
            or narrow.in_proj.in_features != wide.in_proj.in_features:
        raise ValueError(f"cannot widen a {narrow.codebook_size} x {d} quantizer of a {narrow.in_proj.in_features}-"
                         f"channel latent into a {wide.codebook_size} x {wide_d} one of {wide.in_proj.in_features}")
    wide.in_proj.weight[d:] *= new_input_scale
    wide.in_proj.weight[:d] = narrow.in_proj.weight
    wide.in_proj.bias.zero_()[:d] = narrow.in_proj.bias
    wide.out_proj.weight[:, :d] = narrow.out_proj.weight
    wide.out_proj.bias.copy_(narrow.out_proj.bias)
    wide.codebook.zero_()[:, :d] = narrow.codebook
    wide.usage.copy_(narrow.usage)
    wide.initialized.copy_(narrow.initialized)
