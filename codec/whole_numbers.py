"""The check of a count given to a streaming session (PyTorch's or ONNX's): torch-free, so that
the ONNX runtime needs no torch."""

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
