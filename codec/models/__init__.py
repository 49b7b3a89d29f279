"""Assembled codecs (the conv codec, the ESC transformer codec) and their loaders."""

from codec.models.conv_codec import CodecOutput, ConvCodec, ConvCodecConfig
from codec.models.esc_codec import EscCodec, EscCodecConfig
from codec.models.loading import DEFAULT_MODEL, load_model, makes_same_codes, save_model, ship_model
from codec.models.registry import build_model

__all__ = ["DEFAULT_MODEL", "CodecOutput", "ConvCodec", "ConvCodecConfig", "EscCodec", "EscCodecConfig",
           "build_model", "load_model", "makes_same_codes", "save_model", "ship_model"]
