"""Range coding of codes with the entropy model's probabilities (``constriction``'s range coder).

Encoder and decoder must see bit-identical probabilities, so both run the same fixed numeric
setup: PyTorch on one thread, float32, frame by frame (``IncrementalPredictor``), one chunk at a
time from a fresh state. Log-probabilities are then rounded to a grid of 1/64 nat, which absorbs
tiny float differences, and turned into integer frequencies summing to 2^24 with every symbol at
least 1, so that even a symbol the model deems impossible stays codable. Each chunk carries a
CRC of its codes (see ``codec.bitstream``), so a disagreement is detected, never decoded wrong.
"""

import constriction
import numpy as np
import torch

from codec.entropy.model import EntropyModel, IncrementalPredictor
from codec.threads import one_torch_thread

TOTAL = 1 << 24
LOG_GRID = 64.0


def quantized_probabilities(logits: torch.Tensor) -> np.ndarray:
    """``[N, V]`` logits -> ``[N, V]`` float64 probabilities that are exact multiples of 2^-24,
    each at least 2^-24, each row summing to exactly 1."""
    log_p = torch.log_softmax(logits.double(), dim=-1).numpy()
    p = np.exp(np.round(log_p * LOG_GRID) / LOG_GRID)
    vocabulary = p.shape[-1]
    freq = np.floor(p / p.sum(axis=-1, keepdims=True) * (TOTAL - vocabulary)).astype(np.int64) + 1
    rows = np.arange(len(freq))
    freq[rows, freq.argmax(axis=-1)] += TOTAL - freq.sum(axis=-1)
    return freq / TOTAL


# One thread: the fixed numeric setup every entropy encode and decode runs in.
fixed_numerics = one_torch_thread


class EntropyCoder:
    """Range-codes ``[C, K, F]`` chunks of codes with an ``EntropyModel``."""

    def __init__(self, model: EntropyModel):
        self.model = model.eval()
        self.name = model.config.name
        self.weights = getattr(model, "weights_sha256", "unsaved-")  # files name the exact weights
        self.family = constriction.stream.model.Categorical(perfect=False)

    def encode_chunk(self, codes: np.ndarray) -> bytes:
        channels, codebooks, frames = codes.shape
        encoder = constriction.stream.queue.RangeEncoder()
        with fixed_numerics():
            predictor = IncrementalPredictor(self.model, channels, codebooks)
            for t in range(frames):
                for k in range(codebooks):
                    probabilities = quantized_probabilities(predictor.next_logits())
                    symbols = np.ascontiguousarray(codes[:, k, t], dtype=np.int64)
                    encoder.encode(symbols.astype(np.int32), self.family, probabilities)
                    predictor.push(torch.from_numpy(symbols))
        return encoder.get_compressed().astype("<u4").tobytes()

    def decode_chunk(self, data: bytes, channels: int, codebooks: int, frames: int) -> np.ndarray:
        """Raises ValueError if the data runs out (the caller reports it as corruption)."""
        if len(data) % 4:
            raise ValueError("range-coded payload is not a whole number of 32-bit words")
        decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        codes = np.zeros((channels, codebooks, frames), dtype=np.int64)
        with fixed_numerics():
            predictor = IncrementalPredictor(self.model, channels, codebooks)
            for t in range(frames):
                for k in range(codebooks):
                    probabilities = quantized_probabilities(predictor.next_logits())
                    codes[:, k, t] = decoder.decode(self.family, probabilities)
                    predictor.push(torch.from_numpy(codes[:, k, t]))
        return codes
