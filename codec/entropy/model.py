"""A small transformer over code frames that predicts each code's distribution
(EnCodec, Défossez et al. 2022, section 3.3; LMCodec, Jenrungrot et al. 2023; the split into a
time and a depth part follows RQ-Transformer, Lee et al. 2022).

* Time: the embeddings of each past frame's codes (summed over its codebooks) pass through causal
  self-attention over the last ``context_frames`` frames, giving a context for frame ``t`` from
  frames ``< t``. Positions are rotary (RoPE, Su et al. 2021), so any length works.
* Depth: codebook ``k`` of frame ``t`` is predicted from that context plus the embeddings of the
  same frame's codebooks ``< k`` (a residual quantizer's later stages depend on its earlier ones),
  through a small MLP and an output layer of its own (each codebook has its own code meanings).

Coding runs the same function code by code in NumPy (``codec.entropy.predictor``), in the same
order for encoding and decoding, so that both compute the very same numbers.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from codec.atomic import write_atomically
from codec.config import JsonConfig
from codec.eight_bit import from_8_bits, to_8_bits
from codec.errors import CodecError
from codec.modules.transformer import rotary


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
    depth_hidden: int = 384          # hidden width of the per-code depth MLP


def codes_fit(config: EntropyModelConfig, codec) -> bool:
    """Whether an entropy model of ``config`` can code every code of ``codec``: the same codebook
    size, and at least its number of codebooks."""
    return config.codebook_size == codec.codebook_size and config.num_codebooks >= codec.num_codebooks


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
        q, k = rotary(q, positions), rotary(k, positions)
        if cache is not None:
            if cache[0] is not None:
                k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            cache[0], cache[1] = k, v
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, dim))
        return x + self.mlp(self.norm2(x))


class EntropyModel(nn.Module):
    """``logits(codes [B, K, F]) -> [B, F, K, codebook_size]``: code ``(k, t)`` from frames ``< t``
    and codebooks ``< k`` of frame ``t``."""

    def __init__(self, config: EntropyModelConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.num_codebooks * c.codebook_size, c.dim)
        self.start = nn.Parameter(torch.zeros(c.dim))
        self.blocks = nn.ModuleList(_Block(c.dim, c.heads) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.dim)
        self.codebook_query = nn.Parameter(torch.zeros(c.num_codebooks, c.dim))
        self.depth_norm = nn.LayerNorm(c.dim)
        self.depth_mlp = nn.Sequential(nn.Linear(c.dim, c.depth_hidden), nn.GELU(), nn.Linear(c.depth_hidden, c.dim))
        self.out_norm = nn.LayerNorm(c.dim)
        bound = 1 / math.sqrt(c.dim)
        self.out_weight = nn.Parameter(torch.empty(c.num_codebooks, c.dim, c.codebook_size).uniform_(-bound, bound))
        self.out_bias = nn.Parameter(torch.zeros(c.num_codebooks, c.codebook_size))

    def _embed(self, codes: torch.Tensor, first_codebook: int = 0) -> torch.Tensor:
        """``[B, K, ...]`` codes of codebooks ``first_codebook..`` -> ``[B, K, ..., D]``."""
        shape = [1, -1] + [1] * (codes.dim() - 2)
        offsets = torch.arange(first_codebook, first_codebook + codes.shape[1], device=codes.device)
        return self.embed(codes + offsets.view(shape) * self.config.codebook_size)

    def _time(self, previous: torch.Tensor, positions: torch.Tensor, mask, caches=None) -> torch.Tensor:
        """``[B, T, D]`` embeddings of the frames before each position -> ``[B, T, D]`` contexts."""
        x = previous
        for index, block in enumerate(self.blocks):
            x = block(x, positions, mask, None if caches is None else caches[index])
        return self.norm(x)

    def _depth(self, z: torch.Tensor, codebook: int | None = None) -> torch.Tensor:
        """``z [..., K, D]`` (or ``[..., D]`` for one ``codebook``) -> logits ``[..., K, V]``."""
        z = z + self.depth_mlp(self.depth_norm(z))
        z = self.out_norm(z)
        if codebook is not None:
            return z @ self.out_weight[codebook] + self.out_bias[codebook]
        count = z.shape[-2]
        return torch.einsum("...kd,kdv->...kv", z, self.out_weight[:count]) + self.out_bias[:count]

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits for training: ``[B, K, F] -> [B, F, K, V]``."""
        batch, num_codebooks, frames = codes.shape
        embedded = self._embed(codes)                                   # [B, K, F, D]
        frame_sums = embedded.sum(dim=1)                                # [B, F, D]
        previous = torch.cat([self.start.expand(batch, 1, -1), frame_sums[:, :-1]], dim=1)
        positions = torch.arange(frames, device=codes.device)
        distance = positions[:, None] - positions[None, :]
        mask = (distance >= 0) & (distance < self.config.context_frames)
        context = self._time(previous, positions, mask)                # [B, F, D]
        lower = (embedded.cumsum(dim=1) - embedded).transpose(1, 2)     # [B, F, K, D]: codebooks < k
        z = context[:, :, None, :] + lower + self.codebook_query[:num_codebooks]
        return self._depth(z)

    def bits(self, codes: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy in bits per code (the training loss)."""
        logits = self.forward(codes)
        return F.cross_entropy(logits.flatten(0, 2), codes.permute(0, 2, 1).flatten(), reduction="mean") / math.log(2)


ENTROPY_WEIGHTS = "entropy.safetensors"
ENTROPY_CONFIG = "entropy_config.json"


def _to_8_bits(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Matrices as int8 with one float32 scale per slice of axis 1 (a linear layer's output, a code's
    embedding): the file is a quarter of float32's size, and coding re-quantizes to 8 bits anyway
    (``codec.entropy.predictor.ExactLinear``). Vectors (norms, biases) stay float32."""
    weights = {name: tensor.detach().float().cpu().contiguous() for name, tensor in weights.items()}
    return to_8_bits(weights, lambda name, tensor: (1,) if tensor.dim() >= 2 else None)


def has_entropy_model(directory: Path) -> bool:
    """Whether a model folder ships an entropy model: either of its files marks one (the other
    missing is then an error of ``load_entropy_model``, not a codec silently without one)."""
    return any((Path(directory) / name).is_file() for name in (ENTROPY_WEIGHTS, ENTROPY_CONFIG))


def half_an_entropy_model(directory: Path) -> str | None:
    """Which of an entropy model's two files ``directory`` lacks, and the fix, where it holds only
    the other (half copied: a codec silently without it would write plain files); else None."""
    present = [name for name in (ENTROPY_WEIGHTS, ENTROPY_CONFIG) if (Path(directory) / name).is_file()]
    if len(present) != 1:
        return None
    absent = ENTROPY_CONFIG if present[0] == ENTROPY_WEIGHTS else ENTROPY_WEIGHTS
    return (f"has {present[0]} but not {absent}: an entropy model is the two files; copy {absent} there too, "
            f"or remove {present[0]} to use the codec without an entropy model")


def save_entropy_model(model: EntropyModel, directory: Path) -> None:
    """Write ``entropy.safetensors`` (8-bit matrices) and ``entropy_config.json`` to ``directory``."""
    from safetensors.torch import save

    directory.mkdir(parents=True, exist_ok=True)
    weights, config = _to_8_bits(model.state_dict()), json.dumps(model.config.to_dict(), indent=2) + "\n"
    write_atomically(directory / ENTROPY_WEIGHTS, lambda tmp: tmp.write_bytes(save(weights)))   # (as save_model)
    write_atomically(directory / ENTROPY_CONFIG, lambda tmp: tmp.write_text(config))


def load_entropy_model(directory: Path) -> EntropyModel | None:
    """The entropy model stored beside a codec's weights, or None if it has none.

    Raises:
        CodecError: if its files exist but cannot be loaded.
    """
    import hashlib

    from safetensors.torch import load

    if not has_entropy_model(directory):
        return None
    if half := half_an_entropy_model(directory):
        raise CodecError(f"{directory}: {half}")
    try:
        model = EntropyModel(EntropyModelConfig.from_dict(json.loads((directory / ENTROPY_CONFIG).read_text())))
        model.load_state_dict(from_8_bits(load((directory / ENTROPY_WEIGHTS).read_bytes())))   # any path, as load_model
    except Exception as error:   # any failure of these files (safetensors raises its own error type)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CodecError(f"{directory}: cannot load the entropy model ({reason}); fix or remove "
                         f"{ENTROPY_WEIGHTS} and {ENTROPY_CONFIG} there to use the codec without it") from None
    model.weights_sha256 = hashlib.sha256((directory / ENTROPY_WEIGHTS).read_bytes()).hexdigest()
    return model.eval()
