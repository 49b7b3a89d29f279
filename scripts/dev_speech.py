"""What the dev-set check scripts share (scripts/robustness.py, phase_swap.py, head_postprocess.py): every Nth
file of ../shared/data/speech/dev as mono float64 at a given rate, and models loaded with a check
of the bitrate, each failing with a one-line error instead of a traceback."""

import argparse
from pathlib import Path

import numpy as np
import torch

from codec.audio import load_audio, resample
from codec.datasets import visible_files
from codec.errors import CodecError
from codec.models import EscCodec
from codec.models.loading import load_model

# the dev set: ../shared/data/speech/dev beside the checkout (see the shared data's README), found
# from this file, so that a script finds it from any working folder
DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "speech" / "dev"


def dev_folder(text: str) -> Path:
    """An argparse ``type`` for ``--dev``: an existing folder (an empty value would search the working folder)."""
    if not text:
        raise argparse.ArgumentTypeError("give a folder")
    if not (path := Path(text)).exists():
        raise argparse.ArgumentTypeError(f"{text}: no such folder")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: a file, not a folder")
    return path


def add_dev_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dev", type=dev_folder, default=DEV, metavar="FOLDER",
                        help="the dev set: a folder of .flac files, searched recursively (default: "
                             "../shared/data/speech/dev beside the checkout)")


def dev_files(folder: Path = DEV) -> list[Path]:
    """The ``.flac`` files under ``folder`` (linked folders followed, hidden files left out), sorted
    by path; SystemExit naming the folder when it holds none."""
    if not (files := sorted(path for path in visible_files(folder) if path.suffix.lower() == ".flac")):
        raise SystemExit(f"error: {folder}: no dev files (.flac) there; the dev set is ../shared/data/speech/dev "
                         f"beside the checkout (see the shared data's README), or give --dev FOLDER")
    return files


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--every", type=int, default=4, help="use every Nth dev file (default 4: 10 files)")
    parser.add_argument("--kbps", type=float, default=6.0, help="bitrate to code at (one of the model's)")
    add_dev_option(parser)


def dev_audio(parser: argparse.ArgumentParser, every: int, rate: int, folder: Path = DEV) -> list[np.ndarray]:
    """Every ``every``-th dev file under ``folder`` (sorted paths) as ``[T]`` float64 mono at
    ``rate`` Hz; exits through ``parser`` for ``every < 1`` and as ``dev_files`` when there are none."""
    if every < 1:
        parser.error("--every must be >= 1")
    files = dev_files(folder)[::every]
    inputs = []
    for path in files:
        audio, source_rate = load_audio(path)
        inputs.append(resample(audio.mean(axis=1), source_rate, rate).astype(np.float64))
    return inputs


def load_models(names: list[str], kbps: float) -> list:
    """The named models (names or folders); SystemExit naming the problem for an unknown model or
    a bitrate one of them does not support."""
    try:
        models = [load_model(name) for name in names]
        for model in models:
            model.codebooks_for_bitrate(kbps)
    except (CodecError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    return models


def head_script(description: str):
    """The command line that scripts/phase_swap.py and scripts/head_postprocess.py share: parses
    ``model``, ``--every``, ``--kbps`` and ``--dev`` and loads the model (float32, one thread). Returns
    ``(args, model, inputs)`` with the dev audio at the model's rate; SystemExit unless the model
    is an ESC codec whose output head uses the analysis STFT's frames."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("model", help="an ESC codec: model name or directory")
    add_options(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dev_files(args.dev)   # (a folder without dev files: said before the model loads)
    model = load_models([args.model], args.kbps)[0].float().eval()
    c = model.config
    if not isinstance(model, EscCodec) or c.synthesis_n_fft != c.n_fft or c.synthesis_subframes != 1:
        raise SystemExit(f"{args.model}: needs an ESC codec whose output head uses the analysis STFT's "
                         "frames (synthesis_n_fft = n_fft, synthesis_subframes = 1)")
    return args, model, dev_audio(parser, args.every, model.sample_rate, args.dev)
