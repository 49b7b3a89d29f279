"""Quantizers: factorized L2-normalised VQ, residual VQ with quantizer dropout (optionally with
masked channels), and TiCodec's time-invariant global code."""

from codec.quantization.global_code import GlobalCode
from codec.quantization.rvq import QuantizedResult, ResidualVectorQuantizer
from codec.quantization.vq import FactorizedVectorQuantizer

__all__ = ["FactorizedVectorQuantizer", "GlobalCode", "QuantizedResult", "ResidualVectorQuantizer"]
