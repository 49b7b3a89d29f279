"""Evaluate a codec on a folder of speech: PESQ-WB, STOI, measured bitrate, real-time factor."""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from codec.audio import load_audio
from codec.bitstream import from_bytes, to_bytes
from codec.coding import decode_audio, encode_audio
from codec.evaluation.metrics import pesq_wb, stoi_score
from codec.models import ConvCodec


@dataclass
class BitrateResult:
    nominal_kbps: float
    pesq_wb: float          # mean over files
    stoi: float             # mean over files
    file_kbps: float        # mean over files of .codes bytes * 8 / duration
    max_overhead_bytes: float  # largest file size minus nominal bitrate x duration
    real_time_factor: float    # (encode + decode seconds) / audio seconds
    files: int


def evaluate(model: ConvCodec, files: list[Path], bitrates_kbps: list[float],
             threads: int | None = 1) -> list[BitrateResult]:
    """Code every file at every bitrate and score it against the original (first channel).

    ``threads`` sets torch's thread count for the timing (one thread by default, as the speed
    goals are stated).
    """
    if threads:
        torch.set_num_threads(threads)
    clips = [load_audio(path) for path in files]
    results = []
    for kbps in bitrates_kbps:
        pesqs, stois, rates, overheads, compute, seconds = [], [], [], [], 0.0, 0.0
        for audio, sample_rate in clips:
            start = time.perf_counter()
            data = to_bytes(encode_audio(model, audio, sample_rate, kbps))
            decoded, _ = decode_audio(model, from_bytes(data))
            compute += time.perf_counter() - start
            duration = len(audio) / sample_rate
            seconds += duration
            pesqs.append(pesq_wb(audio[:, 0], decoded[:, 0], sample_rate))
            stois.append(stoi_score(audio[:, 0], decoded[:, 0], sample_rate))
            rates.append(len(data) * 8 / duration / 1000)
            overheads.append(len(data) - kbps * 1000 * duration / 8)
        results.append(BitrateResult(kbps, float(np.mean(pesqs)), float(np.mean(stois)),
                                     float(np.mean(rates)), float(np.max(overheads)),
                                     compute / seconds, len(clips)))
    return results
