"""Transformer blocks over sub-band tokens of STFT frames, causal along time (for the ESC codec).

A frame of ``S`` sub-band tokens of width ``D`` goes through, in each block:

* attention across the frame's own tokens (frequency; no time involved, so nothing to stream);
* attention along time per token, causal and limited to the last ``window`` frames (a rolling
  key/value cache carries them from chunk to chunk when streaming);
* an MLP.

Rotary positions (RoPE, Su et al. 2021) are relative to the current chunk, so any length works and
a long stream's angles stay small. Tensors are ``[B, T, S, D]`` (batch, frames, tokens, channels).
"""

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from codec.modules.streaming import StreamingModule, StreamingState


@functools.lru_cache(maxsize=16)
def _frequencies(half: int, device: torch.device) -> torch.Tensor:
    with torch.inference_mode(False):  # a normal tensor, usable in training after inference
        return 10000 ** (-torch.arange(half, dtype=torch.float32, device=device) / half)


def rotary(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of ``x [..., T, d]`` at ``positions [T]`` (any integers)."""
    half = x.shape[-1] // 2
    angles = positions[:, None].to(torch.float32) * _frequencies(half, x.device)[None, :]
    cos, sin = torch.cos(angles), torch.sin(angles)
    # (x1, x2) -> (x1 cos - x2 sin, x1 sin + x2 cos) as x * (cos, cos) + (x2, x1) * (-sin, sin):
    # three passes over x instead of seven
    return torch.addcmul(x * torch.cat([cos, cos], dim=-1), torch.cat([x[..., half:], x[..., :half]], dim=-1),
                         torch.cat([-sin, sin], dim=-1))


@dataclass
class _CacheState(StreamingState):
    keys: torch.Tensor     # [B, S*H, window - 1, d] un-rotated keys of the last frames (oldest first)
    values: torch.Tensor   # [B, S*H, window - 1, d]
    filled: torch.Tensor   # [B] int64: how many of those slots hold frames (the stream's start has fewer)


class CausalTimeAttention(StreamingModule):
    """Multi-head self-attention along time: ``[N, T, D] -> [N, T, D]``, frame ``t`` attending to
    frames ``t - window + 1 .. t``. ``N`` is batch x tokens; ``tokens`` sizes the streaming state,
    whose shapes are fixed (for ONNX export) with a count of the filled cache slots.
    """

    def __init__(self, dim: int, heads: int, window: int, tokens: int):
        super().__init__()
        self.heads, self.window, self.tokens = heads, window, tokens
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def init_streaming_state(self, batch_size: int) -> _CacheState:
        d = self.proj.in_features // self.heads
        weight = self.proj.weight
        weight = weight() if callable(weight) else weight   # a method once int8 (codec/int8.py)
        dtype = weight.dtype if weight.is_floating_point() else torch.float32
        empty = torch.zeros(batch_size, self.tokens * self.heads, self.window - 1, d, dtype=dtype, device=weight.device)
        return _CacheState(empty, empty.clone(), torch.zeros(batch_size, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        state = self._streaming_state
        past = 0 if state is None else self.window - 1
        blockwise = length >= 2 * self.window and not torch.onnx.is_in_onnx_export()
        # the block-wise path wants the keys padded: ``window - past`` zero frames before, to whole blocks after
        front, back = (self.window - past, -length % self.window) if blockwise else (0, 0)
        cached_keys, cached_values = (None, None) if state is None else (state.keys, state.values)
        k, v = self._with_past(k, cached_keys, front, back), self._with_past(v, cached_values, front, back)
        valid = None
        if state is not None:
            slots = torch.arange(past + length, device=x.device)
            # slot j is a real frame if j >= past - filled (the stream's first frames have no past)
            filled = state.filled.repeat_interleave(self.tokens)                       # [N]
            valid = (slots[None, :] >= (past - filled)[:, None])[:, None, None, :]       # [N, 1, 1, L]
            state.keys = k[:, :, front + length:front + length + past].reshape(state.keys.shape)
            state.values = v[:, :, front + length:front + length + past].reshape(state.values.shape)
            state.filled = torch.clamp(state.filled + length, max=past)
        if blockwise:
            attended = self._blockwise(q, k, v, past, valid)
        else:
            query_positions = torch.arange(length, device=x.device)
            key_positions = torch.arange(-past, length, device=x.device)
            q, k = rotary(q, query_positions), rotary(k, key_positions)
            distance = query_positions[:, None] - key_positions[None, :]
            mask = (distance >= 0) & (distance < self.window)
            if valid is not None:
                mask = mask[None, None] & valid
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(attended.transpose(1, 2).reshape(n, length, dim))

    def _with_past(self, new: torch.Tensor, cached: torch.Tensor | None, front: int, back: int) -> torch.Tensor:
        """``[N, H, T, d]`` keys or values -> ``[N, H, front + past + T + back, d]``: ``front`` zero
        frames, the cached past ones (if streaming), ``new``, ``back`` zero frames; one copy."""
        n, heads, _, d = new.shape
        parts = [new] if cached is None else [cached.reshape(n, heads, -1, d), new]
        if front:
            parts.insert(0, new.new_zeros(n, heads, front, d))
        if back:
            parts.append(new.new_zeros(n, heads, back, d))
        return torch.cat(parts, dim=2)

    def _blockwise(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: int,
                   valid: torch.Tensor | None) -> torch.Tensor:
        """The same attention for long inputs, computed block by block: the queries in blocks of
        ``window`` frames, each block against the ``2 * window`` keys that can reach it (read as
        overlapping views, not copies), instead of every query against every key (whose scores
        the window mask would discard).

        ``q [N, H, T, d]``; ``k``/``v [N, H, w + blocks * w, d]`` (not yet rotated; row ``r`` holds
        the frame at ``r - w``, zeros where there is none: see ``_with_past``); ``valid [N, 1, 1,
        past + T]`` or None; ``T >= 2 * window``. Returns ``[N, H, T, d]``.
        """
        n, heads, length, d = q.shape
        w = self.window
        blocks = -(-length // w)
        device = q.device
        q = rotary(F.pad(q, (0, 0, 0, blocks * w - length)), torch.arange(blocks * w, device=device))
        q = q.reshape(n * heads, blocks, w, d)
        k = rotary(k, torch.arange(-w, blocks * w, device=device))   # block b's keys: rows b * w .. b * w + 2w - 1
        k, v = k.contiguous(), v.contiguous()                          # (as_strided below reads the memory)
        k, v = (t.as_strided((n * heads, blocks, 2 * w, d), (t.stride(1), w * d, d, 1)) for t in (k, v))
        offset = torch.arange(w, device=device)[:, None] + w - torch.arange(2 * w, device=device)[None, :]
        band = (offset >= 0) & (offset < w)                                                   # [w, 2w]
        # only the first block reaches before the chunk: the padding and the stream's unfilled past
        key_valid = torch.arange(2 * w, device=device)[None, :] >= w - past                  # [1, 2w]
        if valid is not None:
            key_valid = key_valid & F.pad(valid[:, 0, 0, :past + w], (w - past, 0))          # [N, 2w]
        first = (band[None] & key_valid[:, None, :])[:, None]                               # [N or 1, 1, w, 2w]
        if valid is not None:
            first = first.repeat_interleave(heads, dim=0)                                     # [N * H, 1, w, 2w]
        # additive masks (several times faster than boolean ones here), in the queries' dtype
        additive = lambda mask: q.new_zeros(mask.shape).masked_fill(~mask, float("-inf"))  # noqa: E731
        attended = torch.cat([
            F.scaled_dot_product_attention(q[:, :1], k[:, :1], v[:, :1], attn_mask=additive(first)),
            F.scaled_dot_product_attention(q[:, 1:], k[:, 1:], v[:, 1:], attn_mask=additive(band))], dim=1)
        return attended.view(n, heads, blocks * w, d)[:, :, :length]


class FrequencyAttention(nn.Module):
    """Multi-head self-attention across the ``S`` tokens of each frame: ``[N, S, D] -> [N, S, D]``."""

    def __init__(self, dim: int, heads: int, tokens: int):
        super().__init__()
        self.heads = heads
        self.position = nn.Parameter(torch.zeros(tokens, dim))   # which sub-band a token is
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, tokens, dim = x.shape
        q, k, v = self.qkv(x + self.position).view(n, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v)
        return self.proj(attended.transpose(1, 2).reshape(n, tokens, dim))


class SubbandTransformerBlock(StreamingModule):
    """Pre-norm block: frequency attention, causal windowed time attention, MLP; ``[B, T, S, D]``."""

    def __init__(self, dim: int, heads: int, window: int, tokens: int, mlp_ratio: int = 2):
        super().__init__()
        self.norm_frequency, self.norm_time, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.frequency = FrequencyAttention(dim, heads, tokens)
        self.time = CausalTimeAttention(dim, heads, window, tokens)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, tokens, dim = x.shape
        x = x + self.frequency(self.norm_frequency(x).reshape(batch * frames, tokens, dim)).view_as(x)
        along_time = self.norm_time(x).transpose(1, 2).reshape(batch * tokens, frames, dim)
        x = x + self.time(along_time).view(batch, tokens, frames, dim).transpose(1, 2)
        return x + self.mlp(self.norm_mlp(x))
