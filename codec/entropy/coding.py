"""Range coding of codes with the entropy model's probabilities (``constriction``'s range coder).

Encoder and decoder must see bit-identical probabilities, so both run one fixed numeric setup:
the model in NumPy (exact integer products, the rest float64; ``codec.entropy.predictor``) on one
BLAS thread, code by code (``IncrementalPredictor``), each chunk from a fresh state.
Log-probabilities are then rounded to a grid of 1/64 nat, which absorbs the tiny float
differences of another BLAS build or CPU, and turned into integer frequencies summing to 2^24 in
integer arithmetic, every symbol at least 1, so that even a symbol the model deems impossible
stays codable. Each chunk carries a CRC of its codes (see ``codec.bitstream``), so a
disagreement is detected, never decoded wrong.
"""

import math

import constriction
import numpy as np

from codec.entropy.model import EntropyModel
from codec.entropy.predictor import EntropyWeights, IncrementalPredictor
from codec.threads import one_blas_thread

TOTAL = 1 << 24
_ENCODE_BLOCK = 25               # frames whose probabilities are quantized and range-coded in one call
LOG_GRID = 64                      # steps per nat
_FLOOR = 40 * LOG_GRID             # exp(-40) is far below one count in 2^24
# exp(-i / LOG_GRID) as integers: the frequencies are computed from these in exact arithmetic.
_EXP_TABLE = np.array([round(math.exp(-i / LOG_GRID) * (1 << 30)) for i in range(_FLOOR + 1)], dtype=np.int64)


def quantized_frequencies(logits: np.ndarray) -> np.ndarray:
    """``[N, V]`` logits -> ``[N, V]`` int64 frequencies, each at least 1, each row summing to 2^24."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - np.maximum.reduce(logits, axis=-1, keepdims=True)
    log_total = np.log(np.add.reduce(np.exp(shifted), axis=-1, keepdims=True))
    steps = np.minimum(np.rint((log_total - shifted) * LOG_GRID), _FLOOR).astype(np.int64)   # -log p, in grid steps
    weights = _EXP_TABLE[steps]
    vocabulary = logits.shape[-1]
    freq = weights * (TOTAL - vocabulary) // np.add.reduce(weights, axis=-1, keepdims=True) + 1
    freq[np.arange(len(freq)), freq.argmax(axis=-1)] += TOTAL - np.add.reduce(freq, axis=-1)
    return freq


def quantized_probabilities(logits: np.ndarray) -> np.ndarray:
    """``quantized_frequencies`` as float64 probabilities (exact multiples of 2^-24), the form
    ``constriction``'s categorical model takes."""
    return quantized_frequencies(logits) / TOTAL


def fixed_numerics():
    """One BLAS thread: the fixed numeric setup every entropy encode and decode runs in."""
    return one_blas_thread()


# what a range decoder can still yield once it has read the last word: its 64-bit state, with
# generous slack; a payload far shorter than its codes is found at once, not after hours
_STATE_BITS = 256


class EntropyCoder:
    """Range-codes ``[C, K, F]`` chunks of codes with an ``EntropyModel``."""

    def __init__(self, model: EntropyModel):
        self.model = model.eval()
        self.name = model.config.name
        self.weights = getattr(model, "weights_sha256", "unsaved-")  # files name the exact weights
        self.arrays = EntropyWeights(model)
        self.family = constriction.stream.model.Categorical(perfect=False)

    def encode_chunk(self, codes: np.ndarray) -> bytes:
        channels, codebooks, frames = codes.shape
        encoder = constriction.stream.queue.RangeEncoder()
        codes = np.ascontiguousarray(codes, dtype=np.int64)
        with fixed_numerics():
            predictor = IncrementalPredictor(self.arrays, channels, codebooks)
            for start in range(0, frames, _ENCODE_BLOCK):
                block = codes[:, :, start:start + _ENCODE_BLOCK]
                logits = []
                for t in range(block.shape[2]):
                    for k in range(codebooks):
                        logits.append(predictor.next_logits())
                        predictor.push(block[:, k, t])
                # Rows are quantized independently, so doing a block at once gives the decoder's numbers.
                probabilities = quantized_probabilities(np.concatenate(logits))
                symbols = block.transpose(2, 1, 0).reshape(-1).astype(np.int32)   # frame, codebook, channel
                encoder.encode(symbols, self.family, probabilities)
        return encoder.get_compressed().astype("<u4").tobytes()

    def decode_chunk(self, data: bytes, channels: int, codebooks: int, frames: int) -> np.ndarray:
        """Raises ValueError if the data runs out or asks for more codebooks than the entropy model
        has (the caller reports either as corruption)."""
        if not 1 <= codebooks <= self.arrays.config.num_codebooks:
            raise ValueError(f"{codebooks} codebooks, but the entropy model predicts "
                             f"{self.arrays.config.num_codebooks}")
        if len(data) % 4:
            raise ValueError("range-coded payload is not a whole number of 32-bit words")
        decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        codes = np.zeros((channels, codebooks, frames), dtype=np.int64)
        rows = np.arange(channels)
        bits_past_end = 0.0   # information decoded once every word was read: at most the coder's state
        with fixed_numerics():
            predictor = IncrementalPredictor(self.arrays, channels, codebooks)
            for t in range(frames):
                for k in range(codebooks):
                    probabilities = quantized_probabilities(predictor.next_logits())
                    # (counted only for steps that begin with every word read: a step decodes a code
                    # of each channel, and a 64-channel step's bits before the last word can pass 256)
                    past_end = decoder.maybe_exhausted()
                    codes[:, k, t] = decoder.decode(self.family, probabilities)
                    predictor.push(codes[:, k, t])
                    if past_end:
                        bits_past_end -= np.log2(probabilities[rows, codes[:, k, t]]).sum()
                        if bits_past_end > _STATE_BITS:   # a crafted header's codes, far beyond the payload
                            raise ValueError("the range-coded payload ends before its codes")
        return codes
