"""DDP on CPU with gloo: two processes train a few steps and end with identical parameters and codebooks."""

import os
import socket

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from tests.conftest import REPO
from tests.test_train import audio_folder  # noqa: F401 - the fixture


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, folder: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from codec.train import load_recipe, train
    from codec.train.distributed import cleanup

    recipe = load_recipe(REPO / "recipes" / "tiny.yaml", [f"data.train_dir={folder}", f"run.out_dir={out}/run",
                                                          "run.max_steps=6", "run.log_every=3"])
    model = train(recipe)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out}/rank{rank}.safetensors")
    cleanup()


def test_two_ranks_stay_identical(audio_folder, tmp_path):  # noqa: F811
    mp.spawn(_worker, args=(2, _free_port(), str(audio_folder), str(tmp_path)), nprocs=2, join=True)
    a, b = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    codebooks = [k for k in a if k.endswith(".codebook")]
    assert len(codebooks) == 24
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    assert len((tmp_path / "run" / "train.log").read_text().splitlines()) == 2
