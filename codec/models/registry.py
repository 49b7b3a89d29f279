"""Codec families by name: a model's ``config.json`` says which (``architecture``; the conv codec,
the first family, has none), so loading, training and the CLI need no model-specific branches."""

from codec.errors import CodecError
from codec.models.conv_codec import ConvCodec, ConvCodecConfig
from codec.models.esc_codec import EscCodec, EscCodecConfig

ARCHITECTURES = {"conv": (ConvCodecConfig, ConvCodec), "esc": (EscCodecConfig, EscCodec)}


def config_class(values: dict):
    """The config dataclass for a config dict (``architecture`` key, default ``conv``).

    Raises:
        CodecError: for an unknown architecture.
        ValueError: if ``values`` is not a dict.
    """
    if not isinstance(values, dict):
        raise ValueError(f"the config is not a JSON object but a {type(values).__name__}")
    name = values.get("architecture", "conv")
    if name not in ARCHITECTURES:
        raise CodecError(f"unknown model architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name][0]


def config_from_dict(values: dict):
    """Raises ValueError for unknown keys, CodecError for an unknown architecture."""
    return config_class(values).from_dict(values)


def build_model(config):
    """A freshly initialised codec for ``config`` (a ``ConvCodecConfig`` or ``EscCodecConfig``)."""
    for config_type, model_type in ARCHITECTURES.values():
        if type(config) is config_type:
            return model_type(config)
    raise CodecError(f"not a codec config: {type(config).__name__}")
