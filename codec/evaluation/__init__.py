"""Evaluation: metrics, alignment, baseline codecs, and reports over folders of speech."""

from codec.evaluation.evaluate import EvalSettings, FileResult, Summary, run_evaluation, summarize
from codec.evaluation.metrics import Score, pesq_wb, score_pair

__all__ = ["EvalSettings", "FileResult", "Score", "Summary", "pesq_wb", "run_evaluation",
           "score_pair", "summarize"]
