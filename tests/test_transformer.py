"""Causal windowed time attention: the block-wise path for long inputs computes the same
attention as the dense masked one, offline and streaming (including a stream's first frames)."""

from unittest import mock

import pytest
import torch

from codec.modules.streaming import streaming
from codec.modules.transformer import CausalTimeAttention


def attend(module, chunks, dense: bool, batch_size: int | None) -> torch.Tensor:
    # the exporter's flag selects the dense path, as it does in ONNX export
    with mock.patch("torch.onnx.is_in_onnx_export", return_value=dense), torch.no_grad():
        if batch_size is None:
            return module(torch.cat(chunks, dim=1))
        with streaming(module, batch_size):
            return torch.cat([module(chunk) for chunk in chunks], dim=1)


@pytest.mark.parametrize("lengths", [[16], [37], [3, 40, 1, 24]])   # window 8: 2, 4.6 blocks; a short start
@pytest.mark.parametrize("streamed", [False, True])
def test_blockwise_attention_equals_dense(lengths, streamed):
    torch.manual_seed(0)
    module = CausalTimeAttention(dim=16, heads=2, window=8, tokens=3).eval()
    batch_size = 2
    x = torch.randn(batch_size * 3, sum(lengths), 16)
    chunks = list(x.split(lengths, dim=1))
    expected = attend(module, chunks, dense=True, batch_size=batch_size if streamed else None)
    got = attend(module, chunks, dense=False, batch_size=batch_size if streamed else None)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_blockwise_attention_is_causal():
    torch.manual_seed(0)
    module = CausalTimeAttention(dim=16, heads=2, window=8, tokens=1).eval()
    x = torch.randn(1, 40, 16)
    changed = x.clone()
    changed[:, 25:] += 1.0
    before, after = attend(module, [x], False, None), attend(module, [changed], False, None)
    torch.testing.assert_close(after[:, :25], before[:, :25], rtol=0, atol=0)
    assert not torch.allclose(after[:, 25:], before[:, 25:])


def test_blockwise_attention_in_float64():
    torch.manual_seed(0)
    module = CausalTimeAttention(dim=16, heads=2, window=8, tokens=1).eval().double()
    x = torch.randn(2, 37, 16, dtype=torch.float64)
    torch.testing.assert_close(attend(module, [x], False, None), attend(module, [x], True, None))
