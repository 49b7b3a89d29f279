"""The training loop, reconstruction losses only (multi-resolution mel + STFT magnitude).

Launch:
    codec train recipes/conv_16k.yaml                 # new run into run.out_dir
    codec train recipes/conv_16k.yaml --resume        # continue from run.out_dir/checkpoint.pt
    codec train recipes/tiny.yaml -o run.max_steps=20 # any recipe key can be overridden
    torchrun --nproc_per_node 2 -m codec.train recipes/conv_16k.yaml   # data parallel (DDP)

Every checkpoint holds model, optimizer, step, RNG states and the resolved recipe; the run
directory also gets ``model/`` (safetensors + config, loadable by ``codec --model``) and
``train.log`` (one JSON line per logging interval).
"""

import json
import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from codec.errors import CodecError
from codec.models import ConvCodec, save_model
from codec.train import distributed
from codec.train.data import RandomCropDataset
from codec.train.losses import MultiResolutionMelLoss, MultiResolutionSTFTLoss
from codec.train.recipe import Recipe

CHECKPOINT_FILE = "checkpoint.pt"


def _learning_rate(recipe: Recipe, step: int) -> float:
    optim = recipe.optim
    if step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    return optim.lr * optim.lr_decay ** max(0, step - max(optim.warmup_steps, optim.decay_start))


def _save_checkpoint(path: Path, model, optimizer, step: int, train_seconds: float, recipe: Recipe,
                     dataset) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "train_seconds": train_seconds,
        "recipe": recipe.to_dict(),
        "torch_rng": torch.get_rng_state(),
        "data_rng": json.dumps(dataset.rng.bit_generator.state),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # never leave a half-written checkpoint behind


def train(recipe: Recipe, resume: bool = False, console: Console | None = None) -> ConvCodec:
    """Train the codec a recipe describes; returns the trained model.

    Under torchrun (``WORLD_SIZE`` > 1) every process trains a DDP replica on its own crops;
    rank 0 logs and writes checkpoints (``codec.train.distributed``).

    Raises:
        CodecError: if the run directory already has a checkpoint and ``resume`` is false, or
            ``resume`` is true and there is none, or the data folder has no audio.
    """
    console = console or Console(stderr=True)
    run = recipe.run
    out_dir = Path(run.out_dir)
    checkpoint_path = out_dir / CHECKPOINT_FILE
    if checkpoint_path.exists() and not resume:
        raise CodecError(f"{checkpoint_path} exists: pass --resume to continue that run, "
                         f"or set another run.out_dir")
    if resume and not checkpoint_path.exists():
        raise CodecError(f"--resume: no checkpoint at {checkpoint_path}")
    if run.threads:
        torch.set_num_threads(run.threads)
    rank, world_size = distributed.setup()
    main_process = rank == 0
    torch.manual_seed(run.seed)  # the same initial weights on every rank

    model = ConvCodec(recipe.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.optim.lr,
                                  betas=tuple(recipe.optim.betas),
                                  weight_decay=recipe.optim.weight_decay)
    sample_rate = recipe.model.sample_rate
    segment = int(recipe.data.segment_seconds * sample_rate) // model.frame_size * model.frame_size
    dataset = RandomCropDataset(Path(recipe.data.train_dir), sample_rate, segment,
                                tuple(recipe.data.level_db), seed=run.seed + rank)
    step, previous_seconds = 0, 0.0
    if run.init_from and not resume:
        # continue training across machines from shipped weights (a fresh optimizer state)
        from codec.models import load_model

        initial = load_model(run.init_from)
        if initial.config != recipe.model:
            raise CodecError(f"run.init_from={run.init_from}: its config differs from the recipe's model section")
        model.load_state_dict(initial.state_dict())
    if resume:
        state = torch.load(checkpoint_path, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        previous_seconds = state.get("train_seconds", 0.0)
        torch.set_rng_state(state["torch_rng"])
        if world_size == 1:
            dataset.rng.bit_generator.state = json.loads(state["data_rng"])
    out_dir.mkdir(parents=True, exist_ok=True)
    if main_process:
        console.print(f"training {recipe.model.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M "
                      f"parameters, {dataset.hours:.2f} h of audio, step {step}, {torch.get_num_threads()} "
                      f"threads x {world_size} processes, out {out_dir}")
    replica = torch.nn.parallel.DistributedDataParallel(model) if world_size > 1 else model

    loss_cfg = recipe.loss
    mel_loss = MultiResolutionMelLoss(sample_rate, loss_cfg.mel_windows, loss_cfg.mel_bins)
    stft_loss = MultiResolutionSTFTLoss(loss_cfg.stft_windows)
    choices = torch.tensor(loss_cfg.codebook_choices)
    probs = torch.tensor(loss_cfg.codebook_probs, dtype=torch.float)
    model.train()

    start_time = last_checkpoint = last_log = time.monotonic()
    first_step, skipped, sums = step, 0, {}
    deadline = start_time + 60 * run.max_minutes if run.max_minutes else math.inf
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.3f}  {task.fields[rate]:.2f} steps/s"),
               TimeRemainingColumn()]
    stop_requested = []
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: stop_requested.append(True))
    with Progress(*columns, console=console, transient=True, disable=not main_process) as progress:
        task = progress.add_task("train", total=run.max_steps, completed=step, loss=math.nan, rate=0.0)
        while not distributed.any_true(step >= run.max_steps or time.monotonic() >= deadline or bool(stop_requested)):
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(recipe, step)
            wav = dataset.batch(run.batch_size)
            num_codebooks = choices[torch.multinomial(probs, run.batch_size, replacement=True)]
            output = replica(wav, num_codebooks)
            parts = {
                "mel": mel_loss(output.audio, wav),
                "stft": stft_loss(output.audio, wav),
                "commitment": output.quantized.commitment_loss,
                "codebook": output.quantized.codebook_loss,
            }
            loss = (loss_cfg.mel_weight * parts["mel"] + loss_cfg.stft_weight * parts["stft"]
                    + loss_cfg.commitment_weight * parts["commitment"]
                    + loss_cfg.codebook_weight * parts["codebook"])
            optimizer.zero_grad(set_to_none=True)
            if distributed.any_true(not torch.isfinite(loss)):  # every rank skips together
                skipped += 1
                continue
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.optim.grad_clip)
            if not torch.isfinite(grad_norm):
                skipped += 1
                continue
            optimizer.step()
            step += 1
            for name, value in {"loss": loss, **parts}.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())

            now = time.monotonic()
            rate = (step - first_step) / (now - start_time)
            progress.update(task, completed=step, loss=float(loss.detach()), rate=rate)
            if step % run.log_every == 0 and main_process:
                perplexity = model.quantizer.perplexities()
                record = {"step": step, **{k: round(v / run.log_every, 4) for k, v in sums.items()},
                          "steps_per_s": round(run.log_every / (now - last_log), 3),
                          "lr": optimizer.param_groups[0]["lr"], "skipped": skipped,
                          "perplexity_min": round(min(perplexity), 1),
                          "perplexity_mean": round(float(np.mean(perplexity)), 1),
                          "elapsed_min": round((now - start_time) / 60, 2),
                          "total_min": round((previous_seconds + now - start_time) / 60, 2)}
                with open(out_dir / "train.log", "a") as log:
                    log.write(json.dumps(record) + "\n")
                console.print(" ".join(f"{k}={v}" for k, v in record.items()), highlight=False)
                sums, last_log = {}, now
            if now - last_checkpoint > 60 * run.checkpoint_minutes and main_process:
                _save_checkpoint(checkpoint_path, model, optimizer, step,
                                 previous_seconds + now - start_time, recipe, dataset)
                save_model(model, out_dir / "model")
                last_checkpoint = now
    signal.signal(signal.SIGTERM, previous_handler)
    if main_process:
        _save_checkpoint(checkpoint_path, model, optimizer, step,
                         previous_seconds + time.monotonic() - start_time, recipe, dataset)
        save_model(model, out_dir / "model")
        console.print(f"stopped at step {step} ({skipped} non-finite steps skipped); "
                      f"checkpoint {checkpoint_path}, model {out_dir / 'model'}")
    distributed.barrier()
    return model
