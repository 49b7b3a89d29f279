"""Residual VQ: batched decoding equals codebook-by-codebook decoding; masked-channel RVQ
(Language-Codec) really isolates its channel slices."""

import pytest
import torch

from codec.errors import CodecError
from codec.quantization import ResidualVectorQuantizer
from codec.quantization.vq import GRADIENTS, FactorizedVectorQuantizer, rotation_trick


def quantizer(masked: int = 0) -> ResidualVectorQuantizer:
    torch.manual_seed(0)
    return ResidualVectorQuantizer(dim=12, num_codebooks=5, codebook_size=32, codebook_dim=4,
                                   masked_quantizers=masked).eval()


@pytest.mark.parametrize("masked", [0, 3])
def test_batched_decode_equals_the_sum_of_the_codebooks(masked):
    rvq = quantizer(masked)
    codes = torch.randint(0, 32, (2, 5, 7))
    expected = sum(layer.decode(codes[:, k]) for k, layer in enumerate(rvq.layers))
    torch.testing.assert_close(rvq.decode(codes), expected)
    mask = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(rvq.decode(codes, mask), rvq.decode(codes[:, :2]))


def test_masked_quantizers_read_and_write_only_their_slice():
    rvq = quantizer(masked=3)                      # slices of 4 channels: [0, 4), [4, 8), [8, 12)
    z = torch.randn(2, 12, 7, requires_grad=True)
    for k, (start, stop) in enumerate([(0, 4), (4, 8), (8, 12)]):
        layer = rvq.layers[k]
        out, codes, _, _ = layer(z, torch.ones(2))
        outside = torch.ones(12, dtype=torch.bool)
        outside[start:stop] = False
        assert torch.all(out[:, outside] == 0)                      # writes only its slice
        changed = z.detach().clone()
        changed[:, outside] += torch.randn_like(changed[:, outside])
        assert torch.equal(layer.encode(changed), codes)            # reads only its slice
        (gradient,) = torch.autograd.grad(out.sum(), z)
        assert torch.all(gradient[:, outside] == 0) and gradient[:, start:stop].abs().sum() > 0
    # the later quantizers are plain: they see and write every channel
    assert torch.all(rvq.layers[3].channel_mask == 1)


def test_masked_quantizers_must_divide_the_latent():
    with pytest.raises(CodecError, match="must divide"):
        ResidualVectorQuantizer(dim=12, num_codebooks=5, codebook_size=32, codebook_dim=4, masked_quantizers=5)


@pytest.mark.parametrize("masked", [0, 3])
def test_encode_in_the_codebook_spaces_equals_layer_by_layer(masked):
    rvq = quantizer(masked)
    z = torch.randn(2, 12, 200)
    with torch.no_grad():
        fast, reference = rvq.encode(z, 5), rvq.encode_layer_by_layer(z, 5)
    assert fast.shape == (2, 5, 200)
    # equal up to float rounding: a near-tie may go the other way, then the later codes differ
    assert (fast == reference).float().mean() > 0.99
    assert torch.equal(rvq.encode(z, 2), fast[:, :2])


def test_encode_follows_changed_weights():
    rvq = quantizer()
    z = torch.randn(1, 12, 30)
    with torch.no_grad():
        before = rvq.encode(z, 5)
        rvq.layers[1].in_proj.weight.mul_(-1.0)   # an in-place update, as an optimizer step does
        assert torch.equal(rvq.encode(z, 5), rvq.encode_layer_by_layer(z, 5))
    assert not torch.equal(before, rvq.encode(z, 5))


def test_latent_loss_is_the_uncoded_share_of_the_latent_energy():
    rvq = quantizer().train()
    z = torch.randn(3, 12, 7)
    counts = torch.tensor([0, 2, 5])
    result = rvq(z, counts)
    uncoded = z - result.quantized
    expected = torch.stack([uncoded[b].pow(2).sum() / z[b].pow(2).sum() for b in (1, 2)]).mean()
    torch.testing.assert_close(result.latent_loss, expected)   # the item with no codebook is left out
    assert rvq(z, torch.zeros(3, dtype=torch.long)).latent_loss.item() == 0.0


def test_training_on_the_latent_loss_makes_the_residual_shrink():
    # the factorized lookups' own losses live in the d-dimensional spaces; only this one asks the
    # sum of the codebooks' outputs to approach the latent
    rvq = quantizer().train()
    z = torch.randn(16, 12, 20)
    counts = torch.full((16,), 5)
    optimizer = torch.optim.Adam(rvq.parameters(), lr=1e-2)
    first = rvq(z, counts).latent_loss.item()
    for _ in range(150):
        optimizer.zero_grad()
        rvq(z, counts).latent_loss.backward()
        optimizer.step()
    assert rvq(z, counts).latent_loss.item() < 0.7 * first


def test_latent_loss_is_left_out_of_evaluation():
    rvq = quantizer()   # eval mode, as refinement and coding run it
    assert rvq(torch.randn(2, 12, 7), torch.tensor([2, 5])).latent_loss is None


def test_bookkeeping_kept_out_of_compiled_graphs_still_runs_and_copies():
    """``keep_bookkeeping_out_of_graphs`` (run.compile) swaps the class's method once: outside a
    compiled graph a training step still initialises and counts, and a deep copy keeps its own
    books (a per-instance patch pointed copies back at the original, and made the module
    unpicklable: no instance carries one)."""
    import copy

    from codec.quantization.vq import FactorizedVectorQuantizer, keep_bookkeeping_out_of_graphs

    keep_bookkeeping_out_of_graphs()
    patched = FactorizedVectorQuantizer._train_codebook_health
    keep_bookkeeping_out_of_graphs()
    assert FactorizedVectorQuantizer._train_codebook_health is patched   # once
    torch.manual_seed(0)
    quantizer = FactorizedVectorQuantizer(12, 32, 4).train()
    copied = copy.deepcopy(quantizer)
    copied(torch.randn(2, 12, 20), torch.ones(2))
    assert bool(copied.initialized) and not bool(quantizer.initialized)
    assert "_train_codebook_health" not in vars(copied) and "_train_codebook_health" not in vars(quantizer)


def test_a_widened_quantizer_chooses_the_same_codes_and_decodes_them_alike():
    from codec.quantization.vq import FactorizedVectorQuantizer, widen_lookup

    torch.manual_seed(0)
    narrow, wide = FactorizedVectorQuantizer(12, 32, 4).eval(), FactorizedVectorQuantizer(12, 32, 16).eval()
    widen_lookup(narrow, wide)
    z = torch.randn(3, 12, 50)
    codes = narrow.encode(z)
    assert torch.equal(wide.encode(z), codes)
    torch.testing.assert_close(wide.decode(codes), narrow.decode(codes))
    out, _, _, _ = wide(z, torch.ones(3))
    assert wide.in_proj.weight[4:].abs().sum() > 0 and wide.out_proj.weight[:, 4:].abs().sum() > 0  # room to learn
    torch.testing.assert_close(out, narrow.decode(codes))
    with pytest.raises(ValueError, match="cannot widen a 32 x 16 quantizer"):
        widen_lookup(wide, narrow)


def test_rotation_trick_gives_the_entry_and_rotates_the_gradient():
    torch.manual_seed(0)
    e = torch.nn.functional.normalize(torch.randn(6, 4), dim=-1).requires_grad_()
    q = torch.nn.functional.normalize(torch.randn(6, 4), dim=-1)
    out = rotation_trick(e, q)
    torch.testing.assert_close(out, q)
    g = torch.randn(6, 4)
    out.backward(g)
    for i in range(6):   # R takes e onto q (a rotation: orthogonal), and the gradient is R^T g
        r = torch.nn.functional.normalize(e[i].detach() + q[i], dim=0)
        rotation = torch.eye(4) - 2 * torch.outer(r, r) + 2 * torch.outer(q[i], e[i].detach())
        torch.testing.assert_close(rotation @ e[i].detach(), q[i])
        torch.testing.assert_close(rotation.T @ rotation, torch.eye(4), atol=1e-5, rtol=0)
        torch.testing.assert_close(e.grad[i], rotation.T @ g[i])
    assert not torch.allclose(e.grad, g)   # not the straight-through copy


def test_the_rotation_gradient_changes_only_the_encoders_gradient():
    torch.manual_seed(0)
    z = torch.randn(2, 12, 7, requires_grad=True)
    grads, outputs = {}, {}
    for gradient in GRADIENTS:
        torch.manual_seed(1)
        layer = FactorizedVectorQuantizer(12, 32, 4)
        layer.gradient = gradient
        quantized, codes, commitment, codebook = layer(z, torch.ones(2))
        outputs[gradient] = (quantized.detach(), codes, commitment.detach(), codebook.detach())
        z.grad = None
        quantized.square().sum().backward()
        grads[gradient] = z.grad.clone()
    for straight, rotated in zip(outputs["straight_through"], outputs["rotation"], strict=True):
        torch.testing.assert_close(straight, rotated)
    assert not torch.allclose(grads["straight_through"], grads["rotation"])
