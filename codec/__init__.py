"""codec: neural speech codecs that stream on a CPU.

The Python API (``codec.api``; ``help(codec.api)`` has more):

    import codec

    model = codec.load_model()                      # the default model, or a name or folder
    codes = model.encode(audio, sample_rate=44100)  # numpy [T] / [T, C], or torch [T] / [C, T]
    codes.save("talk.codes")
    audio, sample_rate = model.decode(codec.Codes.load("talk.codes"))   # numpy [T, C]
    codec.encode_file("talk.wav", "talk_6k.codes", bitrate=6)
    codec.decode_file("talk_6k.codes", "talk_out.wav")

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


_API = ("Codec", "Codes", "load_model", "encode_file", "decode_file")


def __getattr__(name: str):
    """The Python API (``codec.api``), imported on first use so that ``import codec`` stays light."""
    if name in _API:
        from codec import api

        return getattr(api, name)
    raise AttributeError(f"module 'codec' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazily imported API too, so that ``dir(codec)`` and tab completion show it."""
    return sorted(set(globals()) | set(_API))
