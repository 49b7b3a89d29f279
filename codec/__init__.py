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

__all__ = ["CodecError", "__version__"]
