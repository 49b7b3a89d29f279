"""Layers shared by the codecs: causal convolutions, ConvNeXt blocks, STFT analysis/synthesis."""

from codec.modules.conv import CausalConv1d, FrameUpsample, causal_padding
from codec.modules.convnext import ChannelLayerNorm, ConvNeXtBlock
from codec.modules.stft import CausalISTFT, CausalSTFT, ISTFTHead

__all__ = [
    "CausalConv1d",
    "CausalISTFT",
    "CausalSTFT",
    "ChannelLayerNorm",
    "ConvNeXtBlock",
    "FrameUpsample",
    "ISTFTHead",
    "causal_padding",
]
