"""Entropy coding of codes: a causal transformer predicts each code, a range coder spends
-log2(p) bits on it (EnCodec section 3.3, LMCodec)."""

from codec.entropy.coding import EntropyCoder
from codec.entropy.model import EntropyModel, EntropyModelConfig, load_entropy_model, save_entropy_model

__all__ = ["EntropyCoder", "EntropyModel", "EntropyModelConfig", "load_entropy_model", "save_entropy_model"]
