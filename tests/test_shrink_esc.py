"""scripts/shrink_esc.py: an ESC codec with fewer transformer blocks, the other weights kept."""

import subprocess
import sys

import pytest
import torch

from codec.models import EscCodec, load_model, save_model
from tests.conftest import REPO
from tests.test_esc import TINY


@pytest.mark.long
def test_shrink_keeps_every_other_weight_and_refuses_more_blocks(tmp_path):
    torch.manual_seed(0)
    source = save_model(EscCodec(TINY).eval(), tmp_path / "esc-tiny")
    script = [sys.executable, str(REPO / "scripts" / "shrink_esc.py"), str(source)]
    result = subprocess.run([*script, str(tmp_path / "small"), "--decoder-blocks", "1,0"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "dropped decoder.1.0" in result.stdout
    big, small = load_model(source), load_model(tmp_path / "small")
    assert small.config.decoder_blocks == [1, 0] and small.config.encoder_blocks == TINY.encoder_blocks
    kept = small.state_dict()
    assert all(torch.equal(kept[k], v) for k, v in big.state_dict().items() if k in kept)
    assert len(kept) < len(big.state_dict())
    small.decode(small.encode(torch.randn(1, 1, 8 * small.frame_size), small.num_codebooks))

    for bad in (["--decoder-blocks", "2,1"], ["--decoder-blocks", "1"], ["--encoder-blocks=-1,1"]):
        result = subprocess.run([*script, str(tmp_path / "other"), *bad], cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 2 and "counts, each from 0" in result.stderr, bad
    result = subprocess.run([*script, str(tmp_path / "small"), "--decoder-blocks", "1,0"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and "already holds a model" in result.stderr
