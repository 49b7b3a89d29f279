"""Assembled codecs and their loaders."""

from codec.models.conv_codec import CodecOutput, ConvCodec, ConvCodecConfig
from codec.models.loading import DEFAULT_MODEL, load_model, save_model

__all__ = ["DEFAULT_MODEL", "CodecOutput", "ConvCodec", "ConvCodecConfig", "load_model", "save_model"]
