"""Metrics and evaluation of codecs on folders of speech."""

from codec.evaluation.evaluate import BitrateResult, evaluate
from codec.evaluation.metrics import pesq_wb, stoi_score

__all__ = ["BitrateResult", "evaluate", "pesq_wb", "stoi_score"]
