"""Faster CPU inference: a codec's linear layers run as int8 matrix products (PyTorch dynamic
quantization, Jacob et al. 2018: int8 weights with one scale per weight matrix; each call's
activations quantized to 8 bits with one scale for the whole input tensor).

The weights on disk are unchanged, so a file encoded this way is an ordinary ``.codes`` file that
any runtime decodes. What changes is the arithmetic: codes and audio differ slightly from the
float model's, and because the activation scale is set per call, chunked (streaming) and offline
coding no longer agree exactly, and the items of one batch change each other's rounding (so
``codec.coding`` codes a file's channels in separate sessions: ``codec.streaming.file_encoder``).
The quantizer's own projections stay float32 (their weights are read directly, not through a
linear layer's forward). Scales per output channel measured no better on the default model.
"""

import warnings

import torch
from torch import nn

from codec.errors import CodecError

FLOAT_ONLY = ("quantizer",)   # top-level submodules that stay float32


def quantize_linear_layers(model: nn.Module) -> nn.Module:
    """Replace ``model``'s ``nn.Linear`` layers (outside ``FLOAT_ONLY``) by dynamically quantized
    int8 ones, in place; returns the model. Inference only: the result has no gradients.

    Raises:
        CodecError: if this PyTorch build has no dynamic quantization or no int8 CPU engine.
    """
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError:
        raise CodecError(f"--int8 needs PyTorch's dynamic quantization (torch.ao.quantization), "
                         f"which torch {torch.__version__} lacks; run without --int8") from None
    if torch.backends.quantized.engine == "none":
        raise CodecError(f"--int8: torch {torch.__version__} has no int8 CPU engine on this machine "
                         f"(supported: {', '.join(torch.backends.quantized.supported_engines)}); "
                         "run without --int8")
    layers = {name for name, module in model.named_modules()
              if isinstance(module, nn.Linear) and name.split(".")[0] not in FLOAT_ONLY}
    with warnings.catch_warnings():  # torch.ao.quantization's deprecation notice is not the user's concern
        warnings.simplefilter("ignore")
        quantize_dynamic(model, layers, dtype=torch.qint8, inplace=True)
    model.int8 = True
    return model
