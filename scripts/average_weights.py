"""Average the weights of fine-tunes that started from the same model (a uniform "model soup":
Wortsman et al., "Model soups: averaging weights of multiple fine-tuned models improves accuracy
without increasing inference time", ICML 2022).

    .venv/bin/python scripts/average_weights.py runs/esc-16k-small-soup/model esc-16k-small \
        runs/esc-16k-small-phase-derivative-w5/model runs/esc-16k-small-pesq/model

Every float tensor becomes the mean over the models (integer buffers are taken from the first).
Fine-tunes of the decoder alone leave the encoder's weights identical in each, so their average
makes the same codes as each of them (checked: it says so), and once shipped over the first
model's folder with ``codec.models.ship_model`` it reads that model's ``.codes`` files.

Writes ``OUT/model.safetensors`` and ``OUT/config.json`` (float32) into a new folder. Raises
SystemExit for fewer than two models, an unknown model, models of different configurations or
tensor names, or an ``OUT`` that already holds a model.
"""

import argparse
import copy
import shutil
from pathlib import Path

from script_errors import new_folder_problem, run_main  # first: a Ctrl-C while torch loads is one line

# isort: split
import torch

from codec.errors import CodecError
from codec.models import load_model, save_model
from codec.models.loading import makes_same_codes


def average(models: list) -> dict[str, torch.Tensor]:
    """The uniform average of the models' state dicts (float tensors; others from the first)."""
    states = [model.state_dict() for model in models]
    for state in states[1:]:
        if state.keys() != states[0].keys() or any(state[k].shape != states[0][k].shape for k in state):
            raise SystemExit("the models' tensors differ in names or shapes: only fine-tunes of one model average")
    return {name: torch.stack([state[name].double() for state in states]).mean(0).to(tensor.dtype)
            if tensor.is_floating_point() else tensor for name, tensor in states[0].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for the averaged model")
    parser.add_argument("models", nargs="+", help="two or more models (names or folders) of one configuration")
    args = parser.parse_args()
    if len(args.models) < 2:
        parser.error("give two or more models to average")
    if problem := new_folder_problem(args.out, "averaged model"):
        parser.error(problem)
    try:
        models = [load_model(name).float().eval() for name in args.models]
    except CodecError as error:
        raise SystemExit(f"error: {error}") from None
    if any(model.config != models[0].config for model in models[1:]):
        raise SystemExit("the models' configurations differ: only fine-tunes of one model average")
    soup = copy.deepcopy(models[0])
    soup.load_state_dict(average(models))
    same = all(makes_same_codes(soup, model) for model in models)
    made = not args.out.exists()
    try:
        save_model(soup, args.out)
    except BaseException:
        if made:   # no empty or half-written folder left behind
            shutil.rmtree(args.out, ignore_errors=True)
        raise
    print(f"{args.out}: the average of {len(models)} models; "
          f"{'the same codes as each' if same else 'codes differ from the models (their encoders differ)'}")


if __name__ == "__main__":
    run_main(main)
