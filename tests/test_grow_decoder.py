"""scripts/grow_decoder.py: more decoder blocks that start as the identity."""

import dataclasses
import subprocess
import sys

import pytest
import torch

from codec.models import ConvCodec, EscCodec, load_model, save_model
from tests.conftest import REPO
from tests.test_esc import TINY


def test_grown_decoder_decodes_as_before_and_its_new_blocks_learn(tiny_model_dir, tmp_path):
    out = tmp_path / "grown"
    subprocess.run([sys.executable, str(REPO / "scripts" / "grow_decoder.py"), str(tiny_model_dir), str(out),
                    "--code-rate", "2", "--analysis", "1"], check=True, cwd=REPO, capture_output=True)
    before, grown = load_model(tiny_model_dir), load_model(out)
    c, g = before.config, grown.config
    assert (g.decoder_code_rate_blocks, g.decoder_analysis_blocks) == \
        (c.decoder_code_rate_blocks + 2, c.decoder_analysis_blocks + 1)
    codes = torch.randint(0, c.codebook_size, (2, c.num_codebooks, 12))
    assert torch.equal(grown.decode(codes), before.decode(codes))
    # the encoder is untouched: the same codes
    wav = torch.randn(1, 1, 12 * before.frame_size)
    assert torch.equal(grown.encode(wav, c.num_codebooks), before.encode(wav, c.num_codebooks))
    # a new block (the first after the trained code-rate blocks) gets a gradient through its layer scale
    new_block = grown.decoder[2 + c.decoder_code_rate_blocks]
    assert torch.count_nonzero(new_block.gamma) == 0
    grown.decode_latent(grown.dequantize(codes)).pow(2).mean().backward()
    assert new_block.gamma.grad.abs().sum() > 0
    # it reads the .codes files of the model it grew from
    assert grown.readable_weights == [before.weights_sha256[:8]]


def test_grown_esc_decoder_keeps_the_codes_and_its_new_block_learns(tmp_path):
    torch.manual_seed(0)
    source = save_model(EscCodec(TINY).eval(), tmp_path / "esc-tiny")
    out = tmp_path / "grown"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "grow_decoder.py"), str(source), str(out),
                             "--finest", "2"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    before, grown = load_model(source), load_model(out)
    assert grown.config.decoder_blocks == [TINY.decoder_blocks[0] + 2, *TINY.decoder_blocks[1:]]
    wav = torch.randn(1, 1, 12 * before.frame_size)
    codes = before.encode(wav, before.num_codebooks)
    assert torch.equal(grown.encode(wav, before.num_codebooks), codes)
    assert torch.allclose(grown.decode(codes), before.decode(codes), atol=1e-6)
    # the codes' identity is unchanged, so .codes files written by either model decode with the other
    (config, state), (grown_config, grown_state) = before.code_identity(), grown.code_identity()
    assert config == grown_config and state.keys() == grown_state.keys()
    assert all(torch.equal(state[k], grown_state[k]) for k in state)
    assert grown.readable_weights == [before.weights_sha256[:8]]
    new_block = grown.decoder[0][-1]
    assert torch.count_nonzero(new_block.mlp[-1].weight) == 0
    grown.decode_latent(grown.dequantize(codes)).pow(2).mean().backward()
    assert new_block.mlp[-1].weight.grad.abs().sum() > 0 and new_block.time.proj.weight.grad.abs().sum() > 0


def test_grown_esc_encoder_makes_the_same_codes_until_trained(tmp_path):
    torch.manual_seed(0)
    source = save_model(EscCodec(TINY).eval(), tmp_path / "esc-tiny")
    out = tmp_path / "grown"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "grow_decoder.py"), str(source), str(out),
                             "--finest", "0", "--encoder", "1"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    before, grown = load_model(source), load_model(out)
    assert grown.config.encoder_blocks == [TINY.encoder_blocks[0] + 1, *TINY.encoder_blocks[1:]]
    assert grown.config.decoder_blocks == TINY.decoder_blocks
    assert grown.readable_weights == []   # training it changes the codes: a new model
    wav = torch.randn(1, 1, 12 * before.frame_size)
    assert torch.equal(grown.encode(wav, before.num_codebooks), before.encode(wav, before.num_codebooks))
    new_block = grown.encoder[0][-1]
    assert torch.count_nonzero(new_block.mlp[-1].weight) == 0
    grown.encode_latent(wav).pow(2).mean().backward()
    assert new_block.mlp[-1].weight.grad.abs().sum() > 0 and new_block.time.proj.weight.grad.abs().sum() > 0


def test_grow_refuses_what_it_cannot_grow(tiny_model_dir, tmp_path):
    torch.manual_seed(0)
    config = dataclasses.replace(load_model(tiny_model_dir).config, global_groups=2)
    source = save_model(ConvCodec(config).eval(), tmp_path / "with-global-code")
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "grow_decoder.py"), str(source),
                             str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0 and "conv codecs without a global code" in result.stderr
    assert not (tmp_path / "out").exists()
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "grow_decoder.py"), "esc-16k-small",
                             str(tmp_path / "out"), "--finest", "0"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and "at least one block must be added" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.long
def test_grow_refuses_bad_counts_and_an_existing_model(tiny_model_dir, tmp_path):
    script = [sys.executable, str(REPO / "scripts" / "grow_decoder.py"), str(tiny_model_dir)]
    for counts in (["--code-rate", "-1"], ["--code-rate", "0", "--analysis", "0"]):
        result = subprocess.run([*script, str(tmp_path / "out"), *counts], cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 2 and "must be >= 0" in result.stderr
    before = (tiny_model_dir / "model.safetensors").read_bytes()
    result = subprocess.run([*script, str(tiny_model_dir)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and "already holds a model" in result.stderr
    assert (tiny_model_dir / "model.safetensors").read_bytes() == before
    result = subprocess.run([*script, str(tmp_path / "out"), "--finest", "1"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and "is a conv codec: grow it with --code-rate and --analysis" in result.stderr
    (tmp_path / "file").write_text("x")
    result = subprocess.run([*script, str(tmp_path / "file")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and "is a file; give a new folder for the grown model" in result.stderr
