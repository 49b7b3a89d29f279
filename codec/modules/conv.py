"""Causal 1-D convolutions: every output frame depends only on the present and the past.

The padding arithmetic lives here, once: a causal convolution with kernel ``k`` and stride
``s`` pads ``k - s`` samples on the left, so that input of length ``n * s`` gives exactly ``n``
outputs and output ``i`` sees inputs ``[(i + 1) * s - k, (i + 1) * s)``.
"""

import torch
import torch.nn.functional as F
from torch import nn


def causal_padding(kernel_size: int, stride: int = 1, dilation: int = 1) -> int:
    """Left padding (samples) that makes a convolution causal and length-preserving per stride."""
    effective_kernel = (kernel_size - 1) * dilation + 1
    return effective_kernel - stride


class CausalConv1d(nn.Conv1d):
    """``nn.Conv1d`` with left-only padding: ``[B, C_in, n * stride] -> [B, C_out, n]``.

    Raises:
        ValueError: if the input length is not a whole number of strides.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride = self.stride[0]
        if x.shape[-1] % stride:
            raise ValueError(f"input length {x.shape[-1]} is not a multiple of the stride {stride}")
        pad = causal_padding(self.kernel_size[0], stride, self.dilation[0])
        return super().forward(F.pad(x, (pad, 0)))


class FrameUpsample(nn.Module):
    """Upsample frames by an integer factor with a transposed conv whose kernel equals its stride.

    Kernel == stride means the output frames of one input frame do not overlap the next ones, so
    the layer is exactly causal: ``[B, C_in, n] -> [B, C_out, n * factor]``.
    """

    def __init__(self, in_channels: int, out_channels: int, factor: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(in_channels, out_channels, factor, stride=factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
