"""Causal ConvNeXt 1-D block, as used by Vocos ("Vocos: Closing the gap between time-domain and
Fourier-based neural vocoders", Siuzdak 2023) with the depthwise convolution made causal."""

import torch
from torch import nn

from codec.modules.conv import CausalConv1d


class ConvNeXtBlock(nn.Module):
    """Causal depthwise conv -> LayerNorm -> pointwise MLP -> layer scale, with a residual.

    Shapes: ``[B, D, N] -> [B, D, N]``.
    """

    def __init__(self, dim: int, kernel_size: int = 7, mlp_ratio: float = 3.0,
                 layer_scale: float = 1e-2):
        super().__init__()
        self.depthwise = CausalConv1d(dim, dim, kernel_size, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.pointwise_in = nn.Linear(dim, hidden)
        self.activation = nn.GELU()
        self.pointwise_out = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        x = self.depthwise(x).transpose(1, 2)  # [B, N, D]
        x = self.pointwise_out(self.activation(self.pointwise_in(self.norm(x))))
        return residual + (self.gamma * x).transpose(1, 2)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of a ``[B, D, N]`` tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)
