"""Residual vector quantization with quantizer dropout (SoundStream, Zeghidour et al. 2021;
EnCodec, Défossez et al. 2022): quantizer ``k`` codes what quantizers ``0..k-1`` left over, so the
first ``K`` codebooks alone give a coarser reconstruction at a lower bitrate.

Masked-channel RVQ (MCRVQ, "Language-Codec", Ji et al. 2024): with ``masked_quantizers = N``,
quantizers ``0..N-1`` each see only their own slice of ``D / N`` latent channels (the rest is
masked out of their input and output), so the first codes describe disjoint parts of the latent
side by side instead of the same coarse whole; quantizers ``N..`` are plain residual VQ on what is
left."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from codec.errors import CodecError
from codec.quantization.vq import FactorizedVectorQuantizer


@dataclass
class QuantizedResult:
    quantized: torch.Tensor        # [B, D, F] sum of the active quantizers' outputs
    codes: torch.Tensor            # [B, K, F] int64, K = largest number of codebooks in the batch
    commitment_loss: torch.Tensor  # scalar, summed over quantizers
    codebook_loss: torch.Tensor    # scalar, summed over quantizers
    # scalar: the share of the latent's energy the active quantizers leave uncoded, measured in the
    # latent's own D-dimensional space (the commitment and codebook losses live in the d-dimensional
    # lookup spaces); None where not computed
    latent_loss: torch.Tensor | None = None


def relative_residual(z: torch.Tensor, residual: torch.Tensor, num_codebooks: torch.Tensor) -> torch.Tensor:
    """``|residual|^2 / |z|^2`` per item (``[B, D, F]`` each), averaged over the items that use at
    least one codebook (``num_codebooks [B]``); 0 when none does. The denominator carries no
    gradient, so the loss cannot fall by inflating the latent."""
    coded = (num_codebooks > 0).to(z.dtype)
    ratio = residual.pow(2).sum(dim=(1, 2)) / z.detach().pow(2).sum(dim=(1, 2)).clamp(min=1e-8)
    return (ratio * coded).sum() / coded.sum().clamp(min=1.0)


class ResidualVectorQuantizer(nn.Module):
    """A stack of ``num_codebooks`` factorized quantizers applied to successive residuals."""

    def __init__(self, dim: int, num_codebooks: int, codebook_size: int, codebook_dim: int,
                 masked_quantizers: int = 0):
        super().__init__()
        if masked_quantizers and (dim % masked_quantizers or masked_quantizers > num_codebooks):
            raise CodecError(f"masked_quantizers={masked_quantizers} must divide the latent's {dim} channels "
                             f"and be at most num_codebooks={num_codebooks}")
        width = dim // masked_quantizers if masked_quantizers else dim
        self.layers = nn.ModuleList(
            FactorizedVectorQuantizer(dim, codebook_size, codebook_dim,
                                      channels=(k * width, (k + 1) * width) if k < masked_quantizers else None)
            for k in range(num_codebooks)
        )

    def forward(self, z: torch.Tensor, num_codebooks: torch.Tensor) -> QuantizedResult:
        """Quantize ``z [B, D, F]`` with ``num_codebooks[b]`` codebooks for item ``b`` (``[B]`` int).

        Per-item counts implement quantizer dropout: one batch trains every bitrate.
        """
        residual = z
        quantized = torch.zeros_like(z)
        codes, commitment, codebook = [], z.new_zeros(()), z.new_zeros(())
        # Training runs every quantizer (dropped ones with weight 0): all ranks of a distributed
        # run then take part in the same codebook updates, and no parameter goes unused.
        used = len(self.layers) if self.training else int(num_codebooks.max())
        for k in range(used):
            active = (num_codebooks > k).to(z.dtype)
            q, c, commitment_k, codebook_k = self.layers[k](residual, active)
            q = q * active[:, None, None]
            quantized = quantized + q
            residual = residual - q
            codes.append(c * (num_codebooks > k)[:, None])  # 0 where dropped
            commitment = commitment + commitment_k
            codebook = codebook + codebook_k
        # (a frozen quantizer runs in eval mode: no codebook at all when every item drops this one)
        codes = torch.stack(codes, dim=1) if codes else z.new_zeros(z.shape[0], 0, z.shape[-1], dtype=torch.long)
        # a training loss only: refinement runs this in eval mode on every step and has no use for it
        uncoded = relative_residual(z, residual, num_codebooks) if self.training else None
        return QuantizedResult(quantized, codes, commitment, codebook, uncoded)

    def encode(self, z: torch.Tensor, num_codebooks: int) -> torch.Tensor:
        """``[B, D, F]`` latent -> ``[B, K, F]`` int64 codes with ``K = num_codebooks``.

        The codes of coding layer by layer (look up, subtract the entry's projection, go on), worked
        out in the codebooks' ``d``-dimensional spaces instead of the latent's ``D``: quantizer
        ``k`` sees ``W_k r_k = W_k z - sum_(j<k) W_k U_j e_j`` (``W`` input, ``U`` output
        projections, ``e_j`` the chosen unit entries), so one ``[D -> K*d]`` product projects the
        latent for every quantizer and each step costs a ``d x d`` product per earlier quantizer.
        Several times less arithmetic than forming every ``D``-wide residual; equal up to float
        rounding (a near-tie may pick the other entry).
        """
        layers = self.layers[:num_codebooks]
        d = layers[0].codebook.shape[1]
        into, in_bias, cross, cross_bias = self._encode_constants(len(layers))
        projected = z.transpose(1, 2) @ into.t() + in_bias                                          # [B, F, K*d]
        codes, chosen = [], []
        for k, layer in enumerate(layers):
            rows = slice(k * d, (k + 1) * d)
            x = projected[..., rows]
            if k:  # minus what the earlier quantizers' outputs project to here
                x = x - torch.cat(chosen, dim=-1) @ cross[rows, :k * d].t() - cross_bias[rows, :k].sum(dim=1)
            # cosine similarity: the argmax needs the entries normalised, not x
            entries = F.normalize(layer.codebook, dim=-1)
            c = (x @ entries.t()).max(dim=-1).indices                        # [B, F]; as argmax, 2x faster
            chosen.append(F.embedding(c, entries))
            codes.append(c)
        return torch.stack(codes, dim=1)

    def _encode_constants(self, count: int) -> tuple[torch.Tensor, ...]:
        """``encode``'s projections for the first ``count`` quantizers, kept while the weights are
        unchanged (a streaming session calls ``encode`` once per frame)."""
        key = (count, tuple((p.data_ptr(), p._version) for p in self.parameters()))
        cacheable = not torch.is_grad_enabled() and not torch.jit.is_tracing()
        cached = getattr(self, "_constants", None)
        if cacheable and cached is not None and cached[0] == key:
            return cached[1]
        layers = self.layers[:count]
        d = layers[0].codebook.shape[1]
        masks = torch.stack([layer.channel_mask for layer in layers])                               # [K, D]
        into = torch.cat([layer.in_proj.weight * layer.channel_mask for layer in layers])           # [K*d, D]
        out_of = torch.cat([layer.out_proj.weight for layer in layers], dim=1) \
            * masks.repeat_interleave(d, dim=0).t()                                                 # [D, K*d]
        out_bias = torch.stack([layer.out_proj.bias for layer in layers]) * masks                   # [K, D]
        cross = into @ out_of                                                                       # [K*d, K*d]
        cross_bias = into @ out_bias.t()                                                            # [K*d, K]
        in_bias = torch.cat([layer.in_proj.bias for layer in layers])                               # [K*d]
        constants = (into, in_bias, cross, cross_bias)
        if cacheable:
            self._constants = (key, constants)
        return constants

    def encode_layer_by_layer(self, z: torch.Tensor, num_codebooks: int) -> torch.Tensor:
        """The reference for ``encode``: each quantizer on the ``D``-wide residual of the last."""
        codes, residual = [], z
        for layer in self.layers[:num_codebooks]:
            c = layer.encode(residual)
            residual = residual - layer.decode(c)
            codes.append(c)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor, codebook_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, K, F]`` codes -> ``[B, D, F]`` quantized latent (sum over the K codebooks).

        ``codebook_mask [K]`` float (optional) weights each codebook's contribution: 1 in use, 0
        ignored (the ONNX decoder takes the bitrate as this input). The K lookups and projections
        run as one gather and one matrix product: the same sum as decoding codebook by codebook,
        in a few graph nodes instead of a few per codebook.
        """
        batch, count, frames = codes.shape
        layers = self.layers[:count]
        size = layers[0].codebook_size
        tables = torch.cat([F.normalize(layer.codebook, dim=-1) for layer in layers])       # [K*N, d]
        offsets = torch.arange(count, device=codes.device)[None, :, None] * size
        entries = F.embedding(codes + offsets, tables)                                          # [B, K, F, d]
        biases = torch.stack([layer.out_proj.bias * layer.channel_mask for layer in layers])    # [K, D]
        if codebook_mask is not None:
            entries = entries * codebook_mask[None, :, None, None]
            bias = codebook_mask @ biases
        else:
            bias = biases.sum(dim=0)
        weights = torch.cat([(layer.out_proj.weight * layer.channel_mask[:, None]).t() for layer in layers])  # [K*d, D]
        stacked = entries.transpose(1, 2).reshape(batch, frames, -1)                            # [B, F, K*d]
        return (stacked @ weights + bias).transpose(1, 2)

    def perplexities(self) -> list[float]:
        """Running codebook perplexity of each quantizer (training diagnostics)."""
        return [layer.perplexity() for layer in self.layers]
