"""Streaming state owned by each module (after moshi's ``StreamingModule``).

A ``StreamingModule`` is offline (state ``None``) until ``streaming(batch_size)`` gives it and
every streaming module below it a fresh state; its one forward path then carries context from
call to call, so that feeding a signal in chunks gives what feeding it whole gives. Offline is
simply one big chunk with a fresh, zero state.

    with model.streaming(batch_size=1):
        for chunk in chunks:
            out = model.some_part(chunk)
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields

import torch
from torch import nn


@dataclass
class StreamingState:
    """Base of the per-module state dataclasses; tensors only, so a state can be copied."""

    def clone(self) -> "StreamingState":
        return type(self)(**{f.name: getattr(self, f.name).clone() for f in fields(self)})


class StreamingModule(nn.Module):
    """Mixin for modules with streaming state. Subclasses implement ``init_streaming_state``.

    Containers that hold no state of their own may subclass it too, for the methods below,
    which reach every streaming module beneath.
    """

    _streaming_state: StreamingState | None = None

    def init_streaming_state(self, batch_size: int) -> StreamingState | None:
        return None

    @property
    def is_streaming(self) -> bool:
        return any(m._streaming_state is not None for _, m in streaming_modules(self))

    def start_streaming(self, batch_size: int) -> None:
        start_streaming(self, batch_size)

    def stop_streaming(self) -> None:
        stop_streaming(self)

    def streaming(self, batch_size: int):
        return streaming(self, batch_size)


def streaming_modules(module: nn.Module) -> Iterator[tuple[str, StreamingModule]]:
    """The modules at or below ``module`` that own a streaming state, by name."""
    return ((name, m) for name, m in module.named_modules() if isinstance(m, StreamingModule)
            and type(m).init_streaming_state is not StreamingModule.init_streaming_state)


def start_streaming(module: nn.Module, batch_size: int) -> None:
    """Give every streaming module at or below ``module`` a fresh (zero) state."""
    for _, m in streaming_modules(module):
        m._streaming_state = m.init_streaming_state(batch_size)


def stop_streaming(module: nn.Module) -> None:
    """Back to offline: drop every state at or below ``module``."""
    for _, m in streaming_modules(module):
        m._streaming_state = None


@contextmanager
def streaming(module: nn.Module, batch_size: int):
    start_streaming(module, batch_size)
    try:
        yield module
    finally:
        stop_streaming(module)


def get_streaming_state(module: nn.Module, copy: bool = True) -> dict[str, StreamingState]:
    """The state tree below ``module`` by module name (copied unless ``copy`` is false)."""
    return {name: (m._streaming_state.clone() if copy else m._streaming_state)
            for name, m in streaming_modules(module) if m._streaming_state is not None}


def set_streaming_state(module: nn.Module, state: dict[str, StreamingState], copy: bool = True) -> None:
    """Install a state tree taken with ``get_streaming_state``."""
    modules = dict(streaming_modules(module))
    for name, module_state in state.items():
        modules[name]._streaming_state = module_state.clone() if copy else module_state


def _zeros_like_param(module: nn.Module, *shape: int) -> torch.Tensor:
    parameter = next(module.parameters(), None)
    buffer = next(module.buffers(), None)
    reference = parameter if parameter is not None else buffer
    return torch.zeros(*shape, dtype=reference.dtype, device=reference.device)
