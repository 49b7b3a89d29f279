"""Training data: manifests of every kind, level normalisation, noise mixing, random EQ."""

import json

import numpy as np
import pytest

from codec.datasets import find_inputs
from codec.errors import CodecError
from codec.train.data import Augmentation, RandomCropDataset
from tests.conftest import tone, write_audio


@pytest.fixture
def folder(tmp_path):
    for i in range(3):
        write_audio(tmp_path / f"clip{i}.wav", tone(1.0, 16000, 200 * (i + 1)), 16000)
    return tmp_path


def test_manifests(folder):
    expected = sorted(folder.glob("*.wav"))
    (folder / "list.tsv").write_text("path\tspeaker\n" + "".join(f"{p.name}\tx\n" for p in expected))
    (folder / "list.jsonl").write_text("".join(json.dumps({"path": str(p)}) + "\n" for p in expected))
    (folder / "wav.scp").write_text("".join(f"utt{i} {p.name}\n" for i, p in enumerate(expected)))
    for manifest in ("list.tsv", "list.jsonl", "wav.scp"):
        assert [p.resolve() for p in find_inputs(folder / manifest)] == [p.resolve() for p in expected]
    (folder / "bad.scp").write_text("utt1 sox a.wav -t wav - |\n")
    with pytest.raises(CodecError, match="no piped commands"):
        find_inputs(folder / "bad.scp")


def test_level_normalisation(folder):
    data = RandomCropDataset(folder, 16000, 8000, level_db=(-30.0, -20.0))
    batch = data.batch(16).numpy()
    levels = 10 * np.log10(np.mean(batch ** 2, axis=-1))
    assert np.all(levels > -30.5) and np.all(levels < -19.5)
    assert np.abs(batch).max() <= 0.99 + 1e-6


def test_noise_mixing_and_eq(folder, tmp_path_factory):
    noise_dir = tmp_path_factory.mktemp("noise")
    write_audio(noise_dir / "noise.wav", 0.1 * np.random.default_rng(0).standard_normal(16000), 16000)
    clean = RandomCropDataset(folder, 16000, 8000, seed=3).batch(4).numpy()
    augmented = RandomCropDataset(folder, 16000, 8000, seed=3, augmentation=Augmentation(
        RandomCropDataset.noise_from(noise_dir, 16000), noise_probability=1.0, noise_snr_db=(10.0, 10.0),
        eq_probability=1.0)).batch(4).numpy()
    assert np.all(np.isfinite(augmented))
    assert not np.allclose(clean, augmented)
