"""Code-by-code predictions of the entropy model in NumPy, for range coding.

The range coder needs the model's distribution for one code at a time (a decoder learns each code
only after decoding it), so the work is ~40 small vector operations per code. PyTorch spends
~10 us of dispatch on each of them on a CPU; NumPy about 1 us.

Encoder and decoder must get the same numbers on any machine, or the decoder's probabilities
would differ from the encoder's. Float32 products differ between BLAS builds and CPUs (the order
of the sums differs), and float64 weights are too slow to stream from memory for every code. So
each linear layer runs as an exact integer product carried by float32 BLAS
(``ExactLinear``; "Integer Networks for Data Compression with Latent-Variable Models",
Ballé et al. 2019): 8-bit weights times activations rounded to integers small enough that every
partial sum stays below 2^24, where float32 is exact in any order. Everything else (norms,
attention scores, GELU) is element-wise or small, in float64, whose last-bit differences only
matter if a value sits within ~1e-12 of a rounding boundary (see ``codec.entropy.coding``).
"""

import numpy as np
from scipy.special import erf

from codec.entropy.model import EntropyModel

_abs, _rint, _maximum, _max = np.abs, np.rint, np.maximum, np.maximum.reduce


def _normalize(x: np.ndarray, average: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """LayerNorm without its affine part (folded into the next layer), ``x [B, D]``; means as
    products with ``average [D, 1] = 1/D`` (one BLAS call instead of NumPy's slower reduction)."""
    centred = x - x @ average
    return centred / np.sqrt((centred * centred) @ average + eps)


def _layer_norm(x: np.ndarray, average: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return _normalize(x, average) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    """The exact (erf) GELU of ``torch.nn.GELU()``."""
    return 0.5 * x * (1.0 + erf(x * 0.7071067811865476))


class ExactLinear:
    """``x [B, D_in] -> x @ W + b`` (float64 in and out) computed exactly as integers.

    ``W [D_in, D_out]`` is rounded to 8-bit integers with one scale per output column; each row of
    ``x`` to integers of at most ``(2^24 - 1) / (127 * D_in)`` in magnitude (688 for D_in = 192)
    with one scale per row. The product of two such integer matrices sums to below 2^24 in
    magnitude, so float32 BLAS computes it exactly, in any order, on any CPU.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray):
        largest = np.abs(weight).max(axis=0)
        self.scale = np.where(largest > 0, largest / 127.0, 1.0)
        self.weight = np.rint(weight / self.scale).astype(np.float32)
        self.bias = bias
        self.levels = float((2 ** 24 - 1) // (127 * weight.shape[0]))

    def integer_input(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``x [B, D_in]`` as integers (held in float32) ``[B, D_in]`` times a step ``[B, 1]``."""
        # ufunc methods directly: this runs ~50 times per code, so NumPy's wrappers' microseconds count
        step = _maximum(_max(_abs(x), axis=-1, keepdims=True), 1e-30) / self.levels
        return _rint(x / step).astype(np.float32), step

    def __call__(self, x: np.ndarray) -> np.ndarray:
        integers, step = self.integer_input(x)
        return (integers @ self.weight) * (step * self.scale) + self.bias


def _folded(norm, linear) -> ExactLinear:
    """``Linear(LayerNorm(x))`` as ``ExactLinear(normalize(x))``: the norm's scale and shift folded
    into the linear layer."""
    weight, bias = _array(linear.weight).T, _array(linear.bias)
    scale, shift = _array(norm.weight), _array(norm.bias)
    return ExactLinear(scale[:, None] * weight, shift @ weight + bias)


def _linear(linear) -> ExactLinear:
    return ExactLinear(_array(linear.weight).T, _array(linear.bias))


def _array(tensor) -> np.ndarray:
    return tensor.detach().to("cpu").double().numpy()


class EntropyWeights:
    """An ``EntropyModel``'s weights as ``ExactLinear`` layers and float64 arrays, with each
    LayerNorm's scale and shift folded into the layer after it."""

    def __init__(self, model: EntropyModel):
        config = model.config
        self.config = config
        self.embed = _array(model.embed.weight).reshape(config.num_codebooks, config.codebook_size, config.dim)
        self.start = _array(model.start)
        self.average = np.full((config.dim, 1), 1.0 / config.dim)
        self.blocks = [{
            "qkv": _folded(b.norm1, b.qkv), "mlp1": _folded(b.norm2, b.mlp[0]),
            "proj": _linear(b.proj), "mlp2": _linear(b.mlp[2]),
        } for b in model.blocks]
        self.norm = (_array(model.norm.weight), _array(model.norm.bias))
        self.codebook_query = _array(model.codebook_query)
        self.depth1 = _folded(model.depth_norm, model.depth_mlp[0])
        self.depth2 = _linear(model.depth_mlp[2])
        out_scale, out_shift = _array(model.out_norm.weight), _array(model.out_norm.bias)
        self.out = [ExactLinear(out_scale[:, None] * weight, out_shift @ weight + bias)   # one per codebook
                    for weight, bias in zip(_array(model.out_weight), _array(model.out_bias), strict=True)]
        half = config.dim // config.heads // 2
        self.frequencies = 10000.0 ** (-np.arange(half, dtype=np.float64) / half)


class IncrementalPredictor:
    """Code-by-code logits, frame after frame, with a key/value window of ``context_frames``.

    ``next_logits()`` gives ``[B, V]`` float64 logits of the next code (codebook ``k`` of frame
    ``t``, in the order k = 0..K-1 within a frame); ``push(codes [B])`` then feeds that code's
    actual value. Encoder and decoder both drive this, step for step. The numbers equal the
    teacher-forced ``EntropyModel.forward`` up to float rounding.
    """

    def __init__(self, weights: EntropyWeights, batch_size: int, num_codebooks: int):
        config = weights.config
        self.weights, self.num_codebooks = weights, num_codebooks
        self.heads, self.head_dim = config.heads, config.dim // config.heads
        self.window = config.context_frames
        shape = (batch_size, self.heads, self.window, self.head_dim)
        self.keys = [np.zeros(shape) for _ in weights.blocks]     # ring buffers of rotated keys
        self.values = [np.zeros(shape) for _ in weights.blocks]
        self.position, self.codebook = 0, 0
        self.previous = np.broadcast_to(weights.start, (batch_size, config.dim))
        self.context = self.frame_sum = None

    @staticmethod
    def _rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        """Rotary positions (as ``codec.modules.transformer.rotary``): ``x [..., d]``."""
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return np.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)

    def _time_step(self) -> np.ndarray:
        """The context of the current frame from the frames before it: ``[B, D]``."""
        x = self.previous
        batch, dim = x.shape
        slot = self.position % self.window
        filled = min(self.position + 1, self.window)
        scale = 1.0 / np.sqrt(self.head_dim)
        angles = self.position * self.weights.frequencies
        cos, sin = np.cos(angles), np.sin(angles)
        average = self.weights.average
        for block, keys, values in zip(self.weights.blocks, self.keys, self.values, strict=True):
            qkv = block["qkv"](_normalize(x, average))
            q, k, v = qkv.reshape(batch, 3, self.heads, self.head_dim).transpose(1, 0, 2, 3)
            keys[:, :, slot], values[:, :, slot] = self._rotate(k, cos, sin), v
            q = self._rotate(q * scale, cos, sin)[:, :, None, :]                      # [B, H, 1, d]
            scores = q @ keys[:, :, :filled].transpose(0, 1, 3, 2)                   # [B, H, 1, n]
            scores = np.exp(scores - _max(scores, axis=-1, keepdims=True))
            attended = (scores / np.add.reduce(scores, axis=-1, keepdims=True)) @ values[:, :, :filled]
            x = x + block["proj"](attended.reshape(batch, dim))
            x = x + block["mlp2"](_gelu(block["mlp1"](_normalize(x, average))))
        return _layer_norm(x, average, *self.weights.norm)

    def next_logits(self) -> np.ndarray:
        w, k = self.weights, self.codebook
        if k == 0:
            self.frame_sum = np.zeros_like(self.previous)
            self.context = self._time_step()
        z = self.context + w.codebook_query[k]
        z = z + w.depth2(_gelu(w.depth1(_normalize(z, w.average))))
        return w.out[k](_normalize(z, w.average))

    def push(self, codes: np.ndarray) -> None:
        """Feed the actual values ``[B]`` of the code just predicted."""
        embedded = self.weights.embed[self.codebook, codes]
        self.frame_sum, self.context = self.frame_sum + embedded, self.context + embedded
        self.codebook += 1
        if self.codebook == self.num_codebooks:
            self.previous = self.frame_sum
            self.position, self.codebook = self.position + 1, 0
