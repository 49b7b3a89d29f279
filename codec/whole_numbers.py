"""The checks of the numbers given to a streaming session (PyTorch's or ONNX's): torch-free, so
that the ONNX runtime needs no torch."""

import numbers
import operator

from codec.errors import CodecError


def whole_number(value, name: str, least: int) -> int:
    """``value`` as an int (numpy integers too), at least ``least``.

    Raises:
        CodecError: naming ``name`` for anything else (a float, a bool, a string).
    """
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < least:
        raise CodecError(f"{name} {value!r}: must be a whole number >= {least}")
    return number


def check_fade(fade) -> float:
    """``fade`` (packet-loss concealment's gain per lost frame) as a float from 0 to 1.

    Raises:
        CodecError: for anything else (a bool, a string, a number outside [0, 1], NaN).
    """
    if isinstance(fade, bool) or not isinstance(fade, numbers.Real) or not 0 <= fade <= 1:
        raise CodecError(f"fade must be a number from 0 (silence after one frame) to 1 (no fading), not {fade!r}")
    return float(fade)
