"""Quantizers: factorized L2-normalised VQ and residual VQ with quantizer dropout."""

from codec.quantization.rvq import QuantizedResult, ResidualVectorQuantizer
from codec.quantization.vq import FactorizedVectorQuantizer

__all__ = ["FactorizedVectorQuantizer", "QuantizedResult", "ResidualVectorQuantizer"]
