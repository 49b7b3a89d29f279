"""8-bit storage of weight matrices: int8 values with float32 scales, stored in the same
safetensors file under ``<name>.scale``. Used where a file's size matters more than the last
bits of a weight (the entropy model; a shipped codec's decoder). Symmetric, round to nearest:
the largest magnitude in each scale group maps to ±127.
"""

from collections.abc import Callable

import torch

SCALE_SUFFIX = ".scale"   # the scales of the 8-bit tensor ``<name>`` are stored as ``<name>.scale``


def to_8_bits(weights: dict[str, torch.Tensor], reduce_dims: Callable[[str, torch.Tensor], tuple[int, ...] | None]
              ) -> dict[str, torch.Tensor]:
    """``weights`` with some tensors stored in 8 bits.

    ``reduce_dims(name, tensor)`` says which tensors and how: ``None`` keeps the tensor as it is;
    a tuple of dimensions stores it as int8 with one float32 scale per slice over those
    dimensions (e.g. ``(1, 2)`` for a conv weight ``[C_out, C_in, K]``: one scale per output
    channel, shape ``[C_out, 1, 1]``).
    """
    stored = {}
    for name, tensor in weights.items():
        dims = reduce_dims(name, tensor)
        if dims is None:
            stored[name] = tensor
            continue
        tensor = tensor.detach().float().cpu()
        scale = tensor.abs().amax(dim=dims, keepdim=True).clamp_min(1e-12) / 127
        stored[name] = torch.round(tensor / scale).to(torch.int8).contiguous()
        stored[name + SCALE_SUFFIX] = scale.contiguous()
    return stored


def from_8_bits(stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The float32 tensors of an 8-bit file (others as stored), without the scale entries."""
    def is_scale(name: str) -> bool:
        return name.endswith(SCALE_SUFFIX) and name[:-len(SCALE_SUFFIX)] in stored

    return {name: tensor.float() * stored[name + SCALE_SUFFIX] if name + SCALE_SUFFIX in stored else tensor
            for name, tensor in stored.items() if not is_scale(name)}
