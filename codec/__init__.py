"""codec: neural speech codecs that stream on a CPU.

Shape letters used in every docstring and comment of the package:

    B   batch size
    C   audio channels
    T   time, in samples
    N   time, in analysis frames (STFT hop ``hop_length``)
    F   time, in code frames (``frame_rate`` per second)
    K   number of codebooks in use
    D   latent channels
"""

from codec.errors import CodecError

__version__ = "0.1.0"

__all__ = ["Codec", "CodecError", "Codes", "__version__", "decode_file", "encode_file", "load_model"]


def __getattr__(name: str):
    """The Python API (``codec.api``), imported on first use so that ``import codec`` stays light."""
    if name in ("Codec", "Codes", "load_model", "encode_file", "decode_file"):
        from codec import api

        return getattr(api, name)
    raise AttributeError(f"module 'codec' has no attribute {name!r}")
