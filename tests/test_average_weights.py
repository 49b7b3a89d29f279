"""scripts/average_weights.py: a uniform average of fine-tunes of one model."""

import subprocess
import sys

import pytest
import torch

from codec.models import load_model, save_model
from tests.conftest import REPO

SCRIPT = str(REPO / "scripts" / "average_weights.py")


def test_average_is_the_mean_and_keeps_the_codes_of_decoder_fine_tunes(tiny_model_dir, tmp_path):
    base = load_model(tiny_model_dir)
    tuned = load_model(tiny_model_dir)
    decoder_weight = next(p for name, p in tuned.named_parameters() if name.startswith("decoder"))
    with torch.no_grad():
        decoder_weight.add_(1.0)              # a decoder-only "fine-tune"
    save_model(tuned, tmp_path / "tuned")
    out = tmp_path / "soup"
    result = subprocess.run([sys.executable, SCRIPT, str(out), str(tiny_model_dir), str(tmp_path / "tuned")],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "the same codes as each" in result.stdout
    soup = load_model(out)
    states = base.state_dict().items(), tuned.state_dict().values(), soup.state_dict().values()
    for (name, a), b, c in zip(*states, strict=True):
        if a.is_floating_point():
            assert torch.allclose(c, (a + b) / 2, atol=1e-6), name
    wav = torch.randn(1, 1, 8 * base.frame_size)
    assert torch.equal(soup.encode(wav, 4), base.encode(wav, 4))


@pytest.mark.long
def test_average_refuses_what_it_cannot_average(tiny_model_dir, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, SCRIPT, *map(str, args)], cwd=REPO, capture_output=True, text=True)

    alone = run(tmp_path / "a", tiny_model_dir)
    assert "two or more" in alone.stderr
    assert "not found" in run(tmp_path / "b", tiny_model_dir, "no-such-model").stderr
    assert "already holds a model" in run(tiny_model_dir, tiny_model_dir, tiny_model_dir).stderr
    differing = run(tmp_path / "other", tiny_model_dir, "esc-16k-small")
    assert "configurations differ" in differing.stderr
    (tmp_path / "file").write_text("a file, not a folder for a model")
    as_file = run(tmp_path / "file", tiny_model_dir, tiny_model_dir)
    assert as_file.returncode == 2 and "file is a file; give a new folder for the averaged model" in as_file.stderr
    (tmp_path / "notes").mkdir()   # a folder of the user's: its files are not replaced
    (tmp_path / "notes" / "config.json").write_text("mine")
    into_notes = run(tmp_path / "notes", tiny_model_dir, tiny_model_dir)
    assert into_notes.returncode == 2 and "notes is not empty (it holds config.json)" in into_notes.stderr
    assert (tmp_path / "notes" / "config.json").read_text() == "mine"
    for result in (alone, differing, as_file, into_notes):   # (each run once: a run starts Python and torch, ~3 s)
        assert result.returncode != 0 and "Traceback" not in result.stderr

