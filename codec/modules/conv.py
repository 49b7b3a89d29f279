"""Causal 1-D convolutions: every output frame depends only on the present and the past.

The padding arithmetic lives here, once: a causal convolution with kernel ``k`` and stride
``s`` needs ``k - s`` samples of history, so that input of length ``n * s`` gives exactly ``n``
outputs and output ``i`` sees inputs ``[(i + 1) * s - k, (i + 1) * s)``. Offline, the history
is zeros (left padding); streaming, it is the end of the previous chunk.
"""

from dataclasses import dataclass

import torch
from torch import nn

from codec.modules.streaming import StreamingModule, StreamingState, _zeros_like_param


def causal_padding(kernel_size: int, stride: int = 1, dilation: int = 1) -> int:
    """Samples of history a causal convolution needs: effective kernel minus stride."""
    effective_kernel = (kernel_size - 1) * dilation + 1
    return effective_kernel - stride


def check_whole_strides(length: int, stride: int, what: str) -> None:
    """Raise ValueError unless ``length`` is a whole number of ``stride``-sample steps."""
    if length % stride:
        raise ValueError(f"{what}: input length {length} is not a multiple of {stride}; "
                         f"buffer the input into whole steps before calling")


@dataclass
class _HistoryState(StreamingState):
    history: torch.Tensor   # [B, C, history] the last input samples of the previous chunk


def with_history(module: StreamingModule, x: torch.Tensor, history_length: int) -> torch.Tensor:
    """Prepend the module's history (zeros offline) to ``x [B, C, T]`` and keep the new one."""
    state = module._streaming_state
    history = state.history if state is not None else x.new_zeros(*x.shape[:2], history_length)
    x = torch.cat([history, x], dim=-1)
    if state is not None:
        state.history = x[..., x.shape[-1] - history_length:]
    return x


class CausalConv1d(nn.Conv1d, StreamingModule):
    """``nn.Conv1d`` made causal: ``[B, C_in, n * stride] -> [B, C_out, n]``, offline or streaming.

    Raises:
        ValueError: if the input length is not a whole number of strides.
    """

    def init_streaming_state(self, batch_size: int) -> _HistoryState:
        pad = causal_padding(self.kernel_size[0], self.stride[0], self.dilation[0])
        return _HistoryState(_zeros_like_param(self, batch_size, self.in_channels, pad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_whole_strides(x.shape[-1], self.stride[0], type(self).__name__)
        pad = causal_padding(self.kernel_size[0], self.stride[0], self.dilation[0])
        return super().forward(with_history(self, x, pad))


class FrameUpsample(nn.Module):
    """Upsample frames by an integer factor with a transposed conv whose kernel equals its stride.

    Kernel == stride means the output frames of one input frame do not overlap the next ones, so
    the layer is exactly causal and needs no state: ``[B, C_in, n] -> [B, C_out, n * factor]``.
    """

    def __init__(self, in_channels: int, out_channels: int, factor: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(in_channels, out_channels, factor, stride=factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
