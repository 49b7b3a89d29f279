"""Entropy coding of codes: a causal transformer predicts each code, a range coder spends
-log2(p) bits on it (EnCodec section 3.3, LMCodec)."""

from typing import TYPE_CHECKING

from codec.entropy.model import EntropyModel, EntropyModelConfig, load_entropy_model, save_entropy_model

if TYPE_CHECKING:
    from codec.entropy.coding import EntropyCoder

__all__ = ["EntropyCoder", "EntropyModel", "EntropyModelConfig", "load_entropy_model", "save_entropy_model"]


def __getattr__(name: str):
    # EntropyCoder on first use: its range coder (constriction) and scipy.special took 0.1 s of the
    # start of every command, most of which code with no entropy model
    if name == "EntropyCoder":
        from codec.entropy.coding import EntropyCoder

        return EntropyCoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
