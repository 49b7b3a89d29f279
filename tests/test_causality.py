"""Streaming capability: the encoder and decoder are causal (more input leaves the past alone)."""

import torch


def test_encoder_is_causal(tiny_model):
    torch.manual_seed(1)
    wav = 0.1 * torch.randn(1, 1, 40 * tiny_model.frame_size)
    short = tiny_model.encode(wav[..., :17 * tiny_model.frame_size], 24)
    full = tiny_model.encode(wav, 24)
    assert torch.equal(short, full[..., :17])


def test_latent_does_not_see_the_future(tiny_model):
    torch.manual_seed(2)
    wav = 0.1 * torch.randn(1, 1, 30 * tiny_model.frame_size)
    changed = wav.clone()
    changed[..., 20 * tiny_model.frame_size:] = 0.3 * torch.randn(1, 1, 10 * tiny_model.frame_size)
    with torch.no_grad():
        a, b = tiny_model.encode_latent(wav), tiny_model.encode_latent(changed)
    torch.testing.assert_close(a[..., :20], b[..., :20], rtol=0, atol=1e-6)
    assert not torch.allclose(a[..., 20:], b[..., 20:])


def test_decoder_is_causal_up_to_its_latency(tiny_model):
    torch.manual_seed(3)
    codes = torch.randint(0, tiny_model.codebook_size, (1, 12, 40))
    full = tiny_model.decode(codes)
    short = tiny_model.decode(codes[..., :25])
    lookahead = tiny_model.latency - tiny_model.frame_size  # the inverse STFT's overlap
    final = 25 * tiny_model.frame_size - lookahead
    torch.testing.assert_close(short[..., :final], full[..., :final], rtol=0, atol=1e-5)
