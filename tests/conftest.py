"""Shared fixtures: generated audio, a tiny randomly initialised model, the shared data folder."""

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.models import ConvCodec, load_model, save_model
from codec.train import load_recipe

REPO = Path(__file__).resolve().parents[1]

# with workers (pytest -n), each worker's torch gets its share of the cores, not all of them each:
# two workers of two threads on two cores spent 70% more CPU time on the same suite
if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(items):
    """Tests marked ``long`` run first: with workers (``pytest -n auto``) none of them starts
    last and runs alone while the other workers sit idle (the README tour alone takes ~4 min)."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)   # (a stable sort)


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """Each test starts with the worker's torch thread count: an in-process ``codec stream``,
    ``eval`` or ``--threads`` sets it for the process, which would leave it changed for whichever
    tests a worker happens to run next."""
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def cache_folder(tmp_path_factory):
    """The tests' exports for ``codec stream`` (``codec.onnx.cache``) go to a folder of their own,
    not the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("codec-cache")
    previous = os.environ.get("CODEC_CACHE_DIR")
    os.environ["CODEC_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        del os.environ["CODEC_CACHE_DIR"]
    else:
        os.environ["CODEC_CACHE_DIR"] = previous


def run_cli(*args, input: bytes | None = None):
    """Run the ``codec`` CLI in-process (``input``: the bytes on stdin); no invocation may print a
    traceback."""
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, [str(a) for a in args], input=input)
    assert "Traceback" not in result.output
    return result


class ReaderGone:
    """A console file whose reader went away (`| head`) once a line with ``step=`` (a training
    record) is written: that write raises BrokenPipeError, as stderr's would."""

    def write(self, text):
        if "step=" in text:
            raise BrokenPipeError(32, "Broken pipe")
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False


SHARED_DATA = REPO.parent / "shared" / "data"
DEV_DIR = SHARED_DATA / "speech" / "dev"


def tone(seconds: float, sample_rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    """``[T, C]`` float64 sine (a different frequency per channel) at -6 dBFS."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return np.stack([0.5 * np.sin(2 * np.pi * freq * (1 + 0.5 * c) * t) for c in range(channels)], axis=1)


def write_audio(path: Path, audio: np.ndarray, sample_rate: int, subtype: str | None = None) -> Path:
    sf.write(str(path), audio, sample_rate, subtype=subtype)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny conv codec with random weights, saved like a shipped model."""
    torch.manual_seed(0)
    config = load_recipe(REPO / "recipes" / "tiny.yaml").model
    return save_model(ConvCodec(config).eval(), tmp_path_factory.mktemp("models") / "tiny-16k")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir) -> ConvCodec:
    return load_model(tiny_model_dir)


@pytest.fixture(scope="session")
def dev_files() -> list[Path]:
    if not DEV_DIR.is_dir():
        pytest.skip(f"real speech not available: {DEV_DIR} is missing (see ../shared/data/README.md)")
    return sorted(DEV_DIR.rglob("*.flac"))
