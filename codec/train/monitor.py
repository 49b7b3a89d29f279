"""Training logs: JSON lines in ``train.log``, a console line, and TensorBoard (scalars, audio,
spectrogram images, codebook usage). Only the main process writes."""

import json
import math
from pathlib import Path

import numpy as np
import torch

COLLAPSE_PERPLEXITY = 8.0   # a codebook used like fewer than 8 entries has collapsed


class Monitor:
    def __init__(self, out_dir: Path, console, tensorboard: bool, enabled: bool = True, purge_step: int | None = None):
        """``purge_step``: a resumed run's first step (its checkpoint's + 1); TensorBoard hides what an
        earlier run logged from it on."""
        self.out_dir, self.console, self.enabled = out_dir, console, enabled
        self.writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=purge_step)

    def scalars(self, step: int, record: dict, perplexities: list[float]) -> None:
        if not self.enabled:
            return
        record = {**record, "perplexity_min": round(min(perplexities), 1),
                  "perplexity_mean": round(float(np.mean(perplexities)), 1)}
        with open(self.out_dir / "train.log", "a") as log:
            log.write(json.dumps(record) + "\n")
        self.console.print(" ".join(f"{k}={v}" for k, v in record.items()), highlight=False)
        collapsed = [k for k, p in enumerate(perplexities) if p < COLLAPSE_PERPLEXITY]
        if collapsed:
            self.console.print(f"warning: codebooks {collapsed} have collapsed "
                               f"(perplexity below {COLLAPSE_PERPLEXITY:g})")
        if self.writer:
            for name, value in record.items():
                if isinstance(value, (int, float)) and name != "step" and math.isfinite(value):
                    self.writer.add_scalar(f"train/{name}", value, step)
            for k, p in enumerate(perplexities):
                self.writer.add_scalar(f"codebooks/perplexity_{k:02d}", p, step)

    def audio(self, step: int, real: torch.Tensor, fake: torch.Tensor, sample_rate: int,
              usage: list[torch.Tensor]) -> None:
        if not (self.enabled and self.writer):
            return
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        for name, wav in (("real", real[0, 0]), ("decoded", fake[0, 0])):
            wav = wav.detach().float().clamp(-1, 1)
            self.writer.add_audio(f"audio/{name}", wav, step, sample_rate=sample_rate)
            spec = torch.stft(wav, 512, 128, window=torch.hann_window(512), return_complex=True).abs()
            figure = plt.figure(figsize=(6, 3))
            plt.imshow(20 * torch.log10(spec + 1e-5).numpy(), origin="lower", aspect="auto", cmap="magma")
            plt.xlabel("frame")
            plt.ylabel("bin")
            self.writer.add_figure(f"spectrogram/{name}", figure, step)
            plt.close(figure)
        for k, counts in enumerate(usage):
            self.writer.add_histogram(f"codebooks/usage_{k:02d}", counts, step)

    def close(self) -> None:
        if self.writer:
            self.writer.close()
