"""The shipped default model: loads by name, and its quality has not regressed below its card."""

import json

import numpy as np
import pytest

from codec.audio import load_audio
from codec.coding import decode_audio, encode_audio
from codec.evaluation import pesq_wb
from codec.models import DEFAULT_MODEL, load_model
from codec.models.loading import models_dir, weights_hash
from tests.conftest import SHARED_DATA

CARD = models_dir() / DEFAULT_MODEL


@pytest.fixture(scope="module")
def shipped():
    if not (CARD / "model.safetensors").is_file():
        pytest.fail(f"the default model is not shipped in {CARD}")
    return load_model(DEFAULT_MODEL), json.loads((CARD / "metrics.json").read_text())


def test_card_matches_the_weights(shipped):
    model, metrics = shipped
    assert metrics["weights_sha256"] == weights_hash(CARD)
    assert "PESQ-WB" in (CARD / "README.md").read_text()


def test_pesq_at_6_kbps_has_not_regressed(shipped):
    model, metrics = shipped
    regression = metrics["regression"]
    paths = [SHARED_DATA / f for f in regression["files"]]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"dev speech not available under {SHARED_DATA}")
    scores = []
    for path in paths:
        audio, rate = load_audio(path)
        decoded, _ = decode_audio(model, encode_audio(model, audio, rate, 6.0))
        scores.append(pesq_wb(audio[:, 0], decoded[:, 0], rate))
    assert np.mean(scores) >= regression["pesq_wb_6kbps"] - 0.1
