"""Latent refinement: the encoder searches, by gradient descent, for the latent that the quantizer
and decoder turn into the closest copy of the input (analysis by synthesis, as CELP speech coders
search their codebooks through the synthesis filter).

A neural encoder maps audio to its latent in one pass, trained to do well on average; for one
given signal a latent that the fixed quantizer and decoder turn into a closer copy usually exists
(the "amortization gap": Cremer, Li and Duvenaud 2018, "Inference suboptimality in variational
autoencoders"). Refinement starts from the encoder's latent and takes Adam steps (step size
decaying to 0 on a cosine) on a perceptual distance between the decoded block and the input,
through the quantizer with a straight-through gradient, as Campos et al. 2019 ("Content adaptive
optimization for neural image compression") do for images.

The distance (``Objective``) is the training recipes' multi-resolution log-mel L1 plus two terms
that model what listeners weigh and a log-mel distance does not, as CELP coders weight their
search error with a perceptual filter: PESQ's loudness-domain disturbance (P.862's perceptual
model; codec/train/pesq_loss.py, after Martín-Doñas et al. 2018) and STOI's envelope
correlation (codec/train/stoi_loss.py, after Kolbæk et al. 2018). Both are models of the
measures that `codec eval` reports (PESQ-WB and STOI), so their gains there are partly gains on
the measures' own models; the log-mel term keeps the output near the input where they are blind.

Only the encoder's work changes: the codes are the model's usual codes at the usual nominal
bitrate (range-coded, a refined stream can take a few % more bits), and every decoder of the
model (ONNX included) reads them as before.

The price is encoding time: each step is one pass of the quantizer and decoder, forward and
backward, over the block.
"""

import math
import operator

import torch

from codec.errors import CodecError
from codec.models import ConvCodec

MEL_WINDOWS = (64, 128, 256, 512, 1024, 2048)   # the training recipes' log-mel loss
MEL_BINS = (8, 16, 32, 64, 128, 128)
STEP_SIZE = 0.03          # Adam's first step, as a share of each item's latent RMS in the block
# Chosen with the objective below on 10 dev files, 60 steps, PESQ-WB gain over plain codes at 1.5 / 3 /
# 6 / 12 kbps: 0.06 +0.25 / +0.29 / +0.53 / +0.66; 0.03 +0.29 / +0.38 / +0.60 / +0.71; 0.02 or
# 0.015 no better (+0.39 at 3 kbps, +0.59 at 6, +0.70 at 12); 0.12 +0.16 at 3 kbps. Also the best of those tried
# for 1 step (10 dev files, 6 kbps, PESQ-WB): 0.01 / 0.02 / 0.03 / 0.06 / 0.1 gave 3.10 / 3.09 / 3.13 / 3.05 / 2.90.
# The gradient crosses the quantizer straight through. A soft-to-hard one (Agustsson et al. 2017: the
# gradient of a softmax over each codebook's entries, at temperature 0.01 / 0.05 / 0.2) gave +0.32 /
# +0.58 / +0.60 on the same 10 files at 6 kbps against +0.60 straight through, so it was not taken.
CONTEXT_FRAMES = 50       # refined frames kept before each block, so the decoder is warmed up
MAX_STEPS = 1000
# The perceptual terms' weights beside the log-mel L1 (weight 1). Chosen on 5 dev files at 6 kbps,
# 60 steps, first step 0.06 (PESQ-WB / STOI): log-mel alone 3.16 / 0.937; + PESQ x 20: 3.43 / 0.919
# (STOI falls); + STOI x 5: 2.71 / 0.967; + PESQ x 20 and STOI x 5: 3.27 / 0.961; x 40 and x 4:
# 3.39 / 0.954; these, x 20 and x 2: 3.42 / 0.952. Re-checked at first step 0.03 on 10 dev files,
# 6 kbps: these 3.57 / 0.958; STOI x 3: 3.54 / 0.961 (and -0.06 PESQ-WB at 3 kbps); STOI x 4:
# 3.52 / 0.962; PESQ x 30 and STOI x 3: 3.55 / 0.957.
PESQ_WEIGHT = 20.0
STOI_WEIGHT = 2.0


def check_refine_steps(steps: int, model: ConvCodec | None = None) -> None:
    """Raise CodecError unless ``steps`` (0 = off) is usable, with ``model`` if given.

    Raises:
        CodecError: for steps that are not a whole number from 0 to MAX_STEPS; a model with a
            global code (TiCodec), whose encoder holds frames back until its global code is
            known; a model in training mode (its quantizers would update their statistics) or
            loaded under ``torch.inference_mode`` or in int8 (its weights cannot take part in autograd).
    """
    try:
        whole = None if isinstance(steps, bool) else operator.index(steps)   # int, numpy ints; not 2.5
    except TypeError:
        whole = None
    if whole is None or not 0 <= whole <= MAX_STEPS:
        raise CodecError(f"refinement steps must be a whole number from 0 (off) to {MAX_STEPS}, got {steps!r}")
    if not steps or model is None:
        return
    if model.global_code is not None:
        raise CodecError(f"model '{model.config.name}' has a global code (TiCodec), and latent refinement "
                         f"works only for models without one; leave refinement off for it")
    if model.training:
        raise CodecError(f"model '{model.config.name}' is in training mode; call .eval() before refining")
    if getattr(model, "int8", False):
        raise CodecError(f"model '{model.config.name}' computes in int8, which has no gradients for latent "
                         f"refinement; use int8 or latent refinement, not both")
    if any(p.is_inference() for p in model.parameters()):
        raise CodecError(f"model '{model.config.name}' was loaded under torch.inference_mode, so its weights "
                         f"cannot take part in refinement; load it outside inference mode")


class Objective:
    """``objective(decoded [1, 1, T], target [1, 1, T]) -> scalar``: log-mel L1 + PESQ_WEIGHT x
    PESQ disturbance + STOI_WEIGHT x (1 - STOI correlation), for one item (see the module's
    docstring); T at least ``min_samples``. The perceptual terms need a sample rate of at least
    9 kHz; below it the objective is the log-mel distance alone."""

    def __init__(self, sample_rate: int):
        # needs librosa: loaded only when used
        from codec.train.losses import MultiResolutionMelLoss
        from codec.train.pesq_loss import PesqDisturbanceLoss
        from codec.train.stoi_loss import StoiLoss
        with torch.inference_mode(False):   # their windows and filter banks take part in autograd
            self.mel = MultiResolutionMelLoss(sample_rate, list(MEL_WINDOWS), list(MEL_BINS))
            self.terms = [(PESQ_WEIGHT, PesqDisturbanceLoss(sample_rate)), (STOI_WEIGHT, StoiLoss(sample_rate))] \
                if sample_rate >= 9000 else []
        self.min_samples = max(max(MEL_WINDOWS), StoiLoss.min_samples(sample_rate) if self.terms else 0)

    def __call__(self, decoded: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.mel(decoded, target) + sum(weight * term(decoded, target) for weight, term in self.terms)


class LatentRefiner:
    """``refiner(latent [B, D, f], audio [B, 1, f * frame_size]) -> refined latent [B, D, f]``,
    block after block of one stream (``StreamingEncoder`` calls it between its encoder and its
    quantizer; ``reset()`` starts a new stream).

    Each block is decoded after the last ``CONTEXT_FRAMES`` refined frames before it, held fixed,
    so the decoder reaches about the state it will be in there; the loss covers those frames and
    the block, against the input they stand for, so the spectral frames across the seam count (and
    the last overlap of the context's output, which the block's first frame adds to). A stream's
    first block starts from the zero state, as decoding does. Each item (channel) is refined on
    its own: its step size follows its own latent's RMS and its own loss, and it keeps the latent
    with the lowest loss seen (the encoder's own included), so refinement never ends farther from
    the input, by this loss, than where it started. (Its refined codes can still differ from the
    same channel refined alone: a batch's float sums round differently, and many steps amplify it.)

    Raises:
        CodecError: see ``check_refine_steps``.
    """

    def __init__(self, model: ConvCodec, num_codebooks: int, steps: int):
        check_refine_steps(steps, model)
        self.model, self.num_codebooks, self.steps = model, num_codebooks, steps
        self.loss = Objective(model.sample_rate)
        self.reset()

    def reset(self) -> None:
        self._context = None         # [B, D, <= CONTEXT_FRAMES] refined frames before the next block
        self._context_audio = None   # [B, 1, their samples] the input they stand for

    def __call__(self, latent: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        if self.steps == 0 or latent.shape[-1] == 0:
            return latent
        with torch.inference_mode(False):   # the session's tensors, copied for autograd
            return self._refine(latent.clone(), audio.clone())

    def _item_losses(self, latent: torch.Tensor, target: torch.Tensor, short: int) -> torch.Tensor:
        """``[B]`` distance (``Objective``) of each item's decoded context + block to its input."""
        counts = torch.full((latent.shape[0],), self.num_codebooks, dtype=torch.long)
        decoded = self.model.forward_latent(torch.cat([self._context, latent], dim=-1), counts).audio
        decoded = torch.nn.functional.pad(decoded, (0, short))
        return torch.stack([self.loss(decoded[b:b + 1], target[b:b + 1]) for b in range(len(decoded))])

    def _refine(self, latent: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        if self._context is None:
            self._context, self._context_audio = latent[..., :0], audio[..., :0]
        # the loss spans context and block: the spectral frames across the seam see both sides
        target = torch.cat([self._context_audio, audio], dim=-1)
        short = max(0, self.loss.min_samples - target.shape[-1])   # a stream shorter than the loss's shortest input
        target = torch.nn.functional.pad(target, (0, short))
        # each item (channel) on its own scale and with its own loss; only float rounding, which a batch
        # sums in another order than one item alone and Adam's steps amplify, ties it to the others
        scale = latent.pow(2).mean(dim=(1, 2), keepdim=True).sqrt().clamp(min=1e-8)
        unit = (latent / scale).requires_grad_(True)
        optimizer = _Adam(unit, self.steps)
        best, best_loss = latent.clone(), torch.full((len(latent),), float("inf"))
        with torch.enable_grad():
            for step in range(self.steps + 1):
                current = unit * scale
                losses = self._item_losses(current, target, short)
                improved = losses.detach() < best_loss        # the best latent seen, the encoder's own included
                best[improved], best_loss[improved] = current.detach()[improved], losses.detach()[improved]
                if step == self.steps:
                    break
                gradient, = torch.autograd.grad(losses.sum(), unit)   # the latent's only: no weight gradients
                optimizer.step(gradient)
        self._context = torch.cat([self._context, best], dim=-1)[..., -CONTEXT_FRAMES:]
        self._context_audio = torch.cat([self._context_audio, audio], dim=-1)[
            ..., -CONTEXT_FRAMES * self.model.frame_size:]
        return best


class _Adam:
    """Adam (Kingma and Ba 2015, with torch.optim.Adam's defaults and arithmetic) on one tensor,
    its step size from ``STEP_SIZE`` decaying to 0 over ``steps`` on a cosine, as
    ``CosineAnnealingLR`` sets it. torch.optim's optimizers import torch._dynamo when first made:
    1.7 s on this project's machine, longer than refining a few seconds of speech by one step."""

    BETAS = (0.9, 0.999)
    EPS = 1e-8

    def __init__(self, tensor: torch.Tensor, steps: int):
        self.tensor, self.steps, self.done = tensor, steps, 0
        self.mean, self.square = torch.zeros_like(tensor), torch.zeros_like(tensor)

    def step(self, gradient: torch.Tensor) -> None:
        """One update of the tensor (in place) from its ``gradient``."""
        (beta1, beta2), self.done = self.BETAS, self.done + 1
        rate = STEP_SIZE * (1 + math.cos(math.pi * (self.done - 1) / self.steps)) / 2
        with torch.no_grad():
            self.mean.lerp_(gradient, 1 - beta1)
            self.square.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
            denominator = (self.square.sqrt() / math.sqrt(1 - beta2 ** self.done)).add_(self.EPS)
            self.tensor.addcdiv_(self.mean, denominator, value=-rate / (1 - beta1 ** self.done))
