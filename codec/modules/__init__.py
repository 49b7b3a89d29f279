"""Layers shared by the codecs: causal convolutions, ConvNeXt blocks, STFT analysis/synthesis."""

from codec.modules.conv import CausalConv1d, FrameUpsample, causal_padding
from codec.modules.convnext import ChannelLayerNorm, ConvNeXtBlock
from codec.modules.stft import CausalISTFT, CausalSTFT, ISTFTHead
from codec.modules.streaming import (
                                     StreamingModule,
                                     StreamingState,
                                     get_streaming_state,
                                     set_streaming_state,
                                     start_streaming,
                                     stop_streaming,
                                     streaming,
)

__all__ = [
    "CausalConv1d",
    "CausalISTFT",
    "CausalSTFT",
    "ChannelLayerNorm",
    "ConvNeXtBlock",
    "FrameUpsample",
    "ISTFTHead",
    "StreamingModule",
    "StreamingState",
    "causal_padding",
    "get_streaming_state",
    "set_streaming_state",
    "start_streaming",
    "stop_streaming",
    "streaming",
]
