"""A small causal transformer over code frames that predicts each code's distribution
(EnCodec, Défossez et al. 2022, section 3.3; LMCodec, Jenrungrot et al. 2023).

Frame ``t``'s codes are predicted from frames ``< t`` only: the embeddings of each past frame's
codes (summed over its codebooks) pass through causal self-attention over the last
``context_frames`` frames, and a shared output layer, offset by a learned per-codebook vector,
gives ``codebook_size`` logits for every codebook of frame ``t``. Positions are rotary (RoPE,
Su et al. 2021), so any length works. Decoding runs frame by frame with a key/value cache; so
does encoding, so that both compute the very same numbers (see ``codec.entropy.coding``).
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from codec.config import JsonConfig
from codec.errors import CodecError


@dataclass
class EntropyModelConfig(JsonConfig):
    """Hyper-parameters; stored as ``entropy_config.json`` beside the weights."""

    name: str = "entropy-conv-16k"
    codec: str = "conv-16k"          # the codec whose codes this models
    num_codebooks: int = 24
    codebook_size: int = 1024
    dim: int = 192
    layers: int = 3
    heads: int = 4
    context_frames: int = 128        # attention window, frames (2.56 s at 50 frames/s)


def _rotate(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of ``x [B, H, T, d]`` at integer ``positions [T]``."""
    half = x.shape[-1] // 2
    frequencies = 10000 ** (-torch.arange(half, dtype=torch.float32, device=x.device) / half)
    angles = positions[:, None].float() * frequencies[None, :]
    cos, sin = torch.cos(angles), torch.sin(angles)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None,
                cache: list | None = None) -> torch.Tensor:
        """``x [B, T, D]``; with ``cache`` ([keys, values] of earlier frames, updated in place)."""
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k = _rotate(q, positions), _rotate(k, positions)
        if cache is not None:
            if cache[0] is not None:
                k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            cache[0], cache[1] = k, v
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, dim))
        return x + self.mlp(self.norm2(x))


class EntropyModel(nn.Module):
    """``logits(codes [B, K, F]) -> [B, F, K, codebook_size]``, frame ``t`` from frames ``< t``."""

    def __init__(self, config: EntropyModelConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.num_codebooks * c.codebook_size, c.dim)
        self.start = nn.Parameter(torch.zeros(c.dim))
        self.blocks = nn.ModuleList(_Block(c.dim, c.heads) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.dim)
        self.codebook_query = nn.Parameter(torch.zeros(c.num_codebooks, c.dim))
        self.out = nn.Linear(c.dim, c.codebook_size)

    def _frame_embeddings(self, codes: torch.Tensor) -> torch.Tensor:
        """``[B, K, F] -> [B, F, D]``: each frame's codes embedded and summed over codebooks."""
        offsets = torch.arange(codes.shape[1], device=codes.device)[None, :, None] * self.config.codebook_size
        return self.embed(codes + offsets).sum(dim=1)

    def _head(self, hidden: torch.Tensor, num_codebooks: int) -> torch.Tensor:
        """``[B, T, D] -> [B, T, K, V]`` logits."""
        return self.out(self.norm(hidden)[:, :, None, :] + self.codebook_query[:num_codebooks])

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits for training: ``[B, K, F] -> [B, F, K, V]``."""
        batch, num_codebooks, frames = codes.shape
        previous = torch.cat([self.start.expand(batch, 1, -1), self._frame_embeddings(codes)[:, :-1]], dim=1)
        positions = torch.arange(frames, device=codes.device)
        distance = positions[:, None] - positions[None, :]
        mask = (distance >= 0) & (distance < self.config.context_frames)
        x = previous
        for block in self.blocks:
            x = block(x, positions, mask)
        return self._head(x, num_codebooks)

    def bits(self, codes: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy in bits per code (the training loss)."""
        logits = self.forward(codes)
        return F.cross_entropy(logits.flatten(0, 2), codes.permute(0, 2, 1).flatten(), reduction="mean") / math.log(2)


class IncrementalPredictor:
    """Frame-by-frame logits with a key/value cache limited to ``context_frames``.

    ``next_logits()`` gives frame ``t``'s ``[B, K, V]`` logits; ``push(codes [B, K])`` then
    feeds frame ``t``'s actual codes. Encoder and decoder both drive this, step for step.
    """

    def __init__(self, model: EntropyModel, batch_size: int, num_codebooks: int):
        self.model, self.num_codebooks = model, num_codebooks
        self.caches = [[None, None] for _ in model.blocks]
        self.position = 0
        self.pending = model.start.detach().expand(batch_size, 1, -1)

    @torch.inference_mode()
    def next_logits(self) -> torch.Tensor:
        x = self.pending
        positions = torch.tensor([self.position])
        for block, cache in zip(self.model.blocks, self.caches, strict=True):
            x = block(x, positions, None, cache)
            if cache[0].shape[2] >= self.model.config.context_frames:  # keep the window
                cache[0], cache[1] = cache[0][:, :, 1:], cache[1][:, :, 1:]
        return self.model._head(x, self.num_codebooks)[:, 0]

    @torch.inference_mode()
    def push(self, codes: torch.Tensor) -> None:
        self.pending = self.model._frame_embeddings(codes[:, :, None])
        self.position += 1


ENTROPY_WEIGHTS = "entropy.safetensors"
ENTROPY_CONFIG = "entropy_config.json"


def save_entropy_model(model: EntropyModel, directory: Path) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(directory / ENTROPY_WEIGHTS))
    (directory / ENTROPY_CONFIG).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")


def load_entropy_model(directory: Path) -> EntropyModel | None:
    """The entropy model stored beside a codec's weights, or None if it has none.

    Raises:
        CodecError: if its files exist but cannot be loaded.
    """
    import hashlib

    from safetensors.torch import load_file

    if not (directory / ENTROPY_CONFIG).is_file():
        return None
    try:
        model = EntropyModel(EntropyModelConfig.from_dict(json.loads((directory / ENTROPY_CONFIG).read_text())))
        model.load_state_dict(load_file(str(directory / ENTROPY_WEIGHTS)))
    except (OSError, ValueError, RuntimeError) as error:
        raise CodecError(f"{directory}: cannot load the entropy model ({error})".splitlines()[0]) from None
    model.weights_sha256 = hashlib.sha256((directory / ENTROPY_WEIGHTS).read_bytes()).hexdigest()
    return model.eval()
