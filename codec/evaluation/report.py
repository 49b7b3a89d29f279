"""Evaluation output: a rich table, ``results.json``, ``results.csv`` and PNG plots."""

import csv
import json
import warnings
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from codec.evaluation.evaluate import FileResult, Summary, as_dict

_LABELS = {"pesq_wb": "PESQ-WB", "pesq_nb": "PESQ-NB", "stoi": "STOI", "si_sdr": "SI-SDR dB",
           "mel_distance": "mel dist (lower better)"}
_THREE_DECIMALS = ("stoi", "mel_distance")   # metrics whose differences lie in the third decimal


def _cell(summary: Summary, metric: str) -> str:
    mean, ci = summary.mean.get(metric), summary.ci95.get(metric)
    if mean is None:
        return "undefined"
    decimals = 3 if metric in _THREE_DECIMALS else 2
    text = f"{mean:.{decimals}f}"
    if ci is not None:
        text += f" ± {ci:.{decimals}f}"
    if summary.undefined.get(metric):
        text += f" ({summary.undefined[metric]} undef.)"
    return text


def summary_table(summaries: list[Summary], threads: int, jobs: int = 1, width: int | None = None) -> Table:
    """The summaries as a table. Where it would not fit ``width`` columns (a narrow terminal: rich
    would cut every number to an ellipsis), without the real-time factors and file counts, with a
    caption naming where they are."""
    metrics = list(summaries[0].mean) if summaries else []
    workers = f", {jobs} workers at once" if jobs > 1 else ""
    rows = [(s.system, s.setting, f"{s.nominal_kbps:g}", _number(s.measured_kbps, ".2f", "-"),
             *[_cell(s, m) for m in metrics], _number(s.encode_rtf, ".4f", "-"), _number(s.decode_rtf, ".4f", "-"),
             str(s.files)) for s in summaries]
    headers = ["codec", "setting", "nominal\nkbps", "measured\nkbps", *[_LABELS[m] for m in metrics],
               "enc\nRTF", "dec\nRTF", "files"]

    def table_of(columns: int, caption: str | None = None) -> Table:
        table = Table(title=f"scores: mean ± 95% CI over files; kbps and real-time factors: over all the audio "
                            f"(weighted by duration), on {threads} thread(s){workers}", caption=caption)
        for index, header in enumerate(headers[:columns]):
            table.add_column(header, justify="left" if index < 2 else "right", overflow="fold")
        for row in rows:
            table.add_row(*row[:columns])
        return table

    table = table_of(len(headers))
    if width is None or Console(width=10_000).measure(table).maximum <= width:
        return table
    return table_of(len(headers) - 3, "(a narrow terminal: the real-time factors and file counts are in "
                                      "results.json and results.csv)")


def write_results(out_dir: Path, results: list[FileResult], summaries: list[Summary], notes: list[str],
                  settings: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"settings": settings, "notes": notes, **as_dict(results, summaries)}
    (out_dir / "results.json").write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    metrics = list(results[0].scores) if results else []
    # surrogateescape: a file name that is not UTF-8 (Linux allows any bytes) is written back as its bytes
    with open(out_dir / "results.csv", "w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "codec", "setting", "nominal_kbps", "measured_kbps", "overhead_kbps",
                         "duration_s", "sample_rate", "lag_samples_16k", "encode_rtf", "decode_rtf",
                         *metrics, "undefined"])
        for r in results:
            writer.writerow([r.path, r.system, r.setting, r.nominal_kbps, _number(r.measured_kbps, ".4f"),
                             _number(r.overhead_kbps, ".4f"), f"{r.duration_s:.3f}", r.sample_rate, r.lag_samples_16k,
                             _number(r.encode_rtf, ".5f"), _number(r.decode_rtf, ".5f"),
                             *["" if r.scores[m] is None else f"{r.scores[m]:.4f}" for m in metrics],
                             "; ".join(f"{m}: {why}" for m, why in r.undefined.items())])


def _number(value: float | None, spec: str, missing: str = "") -> str:
    """``value`` formatted, or ``missing`` for None (a rate of a file with no samples)."""
    return missing if value is None else format(value, spec)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(type(value))


METRIC_RANGES = {"pesq_wb": (1.04, 4.64), "stoi": (0.0, 1.0)}   # MOS-LQO of P.862.2's mapping; a correlation


def plot_rate_distortion(path: Path, summaries: list[Summary]) -> None:
    """PESQ-WB and STOI against measured kbps, one line per codec."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, metric, label in ((axes[0], "pesq_wb", "PESQ-WB (MOS-LQO)"), (axes[1], "stoi", "STOI")):
        for system in dict.fromkeys(s.system for s in summaries):
            points = sorted((s.measured_kbps, s.mean[metric], s.ci95[metric] or 0.0) for s in summaries
                            if s.system == system and s.mean.get(metric) is not None and s.measured_kbps is not None)
            if points:
                x, y, err = (np.array(column) for column in zip(*points, strict=True))
                low, high = METRIC_RANGES[metric]   # a wide interval (few files) stops at what the metric can be
                bars = [np.minimum(err, y - low), np.minimum(err, high - y)]
                axis.errorbar(x, y, yerr=np.clip(bars, 0, None), marker="o", capsize=3, label=system)
        axis.set_xlabel("measured bitrate (kbps)")
        axis.set_ylabel(label)
        axis.set_xscale("log")
        axis.set_xticks([1, 1.5, 3, 6, 12, 24])
        axis.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:   # (none where the metric is undefined for every file)
            axis.legend()
    figure.suptitle("Rate-distortion")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_spectrograms(path: Path, title: str, reference: np.ndarray, decoded: dict[str, np.ndarray],
                      sample_rate: int = 16000) -> None:
    """Log-magnitude spectrograms of the reference and each decoded version, stacked."""
    import librosa
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    signals = {"reference": reference, **decoded}
    figure, axes = plt.subplots(len(signals), 1, figsize=(10, 1.9 * len(signals)), sharex=True, squeeze=False)
    for axis, (name, signal) in zip(axes[:, 0], signals.items(), strict=True):
        with warnings.catch_warnings():   # (a file shorter than the window: padded, as in mel_distance)
            warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
            spec = np.abs(librosa.stft(np.asarray(signal, dtype=np.float32), n_fft=512, hop_length=128))
        db = 20 * np.log10(np.maximum(spec, 1e-5))
        image = axis.imshow(db, origin="lower", aspect="auto", vmin=-100, vmax=max(db.max(), -60), cmap="magma",
                            extent=[0, len(signal) / sample_rate, 0, sample_rate / 2000])
        axis.set_ylabel("kHz")
        axis.set_title(name, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("time (s)")
    figure.colorbar(image, ax=axes[:, 0].tolist(), label="dB")
    figure.suptitle(title, fontsize=10)
    figure.savefig(path, dpi=110)
    plt.close(figure)
