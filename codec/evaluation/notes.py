"""The notes an evaluation prints under its table and stores in results.json: what was done to
the input (resampled, first channel, limited, truncated), how baselines were measured, and why
cells are undefined or rows are over different files."""

from collections import Counter

from codec.evaluation.evaluate import FileResult, Summary, our_names


def result_notes(results: list[FileResult], summaries: list[Summary], baselines: list[str]) -> list[str]:
    """Notes on ``results`` (all files' rows) and their ``summaries``; ``baselines``: the baseline
    names the evaluation ran."""
    notes = []
    files = len({r.path for r in results})
    rates = sorted({r.sample_rate for r in results} - {16000})
    if rates:
        notes.append(f"inputs at {', '.join(map(str, rates))} Hz were resampled to 16 kHz for scoring")
    several = {r.path for r in results if r.channels > 1}
    if several:
        notes.append(f"{len(several)} of {files} files have several channels: each was coded and scored on its first")
    limited = {r.path: r.limited_samples for r in results if r.limited_samples}
    if limited:
        notes.append(f"{len(limited)} of {files} files hold samples beyond ±1.0 full scale "
                     f"({sum(limited.values())} in all): limited to ±1.0 before coding and scoring, so that "
                     f"every system codes the same signal (codec encode codes them as they are for a model with "
                     f"an input level, and limits them for others)")
    truncated = {r.path: r.missing_samples for r in results if r.missing_samples}
    if truncated:
        notes.append(f"{len(truncated)} of {files} files are truncated (shorter than their headers announce, "
                     f"{sum(truncated.values())} samples missing in all): coded and scored as far as they could be "
                     f"read, as codec encode does; first: {next(iter(truncated))}")
    if any(r.system in baselines for r in results):
        notes.append("baselines were scored after aligning their decoded signal (lags in results); their "
                     "real-time factors include starting their programs and temporary files for each file; "
                     "their measured kbps are their packets, the model's the whole .codes file (header included)")
    ours = our_names(results)
    unlike_input = sorted({s.system for s in summaries if s.system in ours and (s.mean.get("si_sdr") or 0) < 0})
    if unlike_input:   # (a reader of the table would take -20 dB for a broken codec)
        notes.append(f"SI-SDR compares waveforms sample by sample; {', '.join(unlike_input)} scored below 0 dB: "
                     f"decoded speech need not follow the input's waveform (this suite's decoders generate the "
                     f"phase with an inverse-STFT head), so it is not comparable with a waveform codec's SI-SDR; "
                     f"compare PESQ-WB, STOI and the mel distance")
    notes += undefined_notes(results)
    if unpaired := unpaired_rows(summaries):
        notes.append(unpaired)
    return notes


METRIC_NAMES = {"pesq_wb": "PESQ-WB", "stoi": "STOI", "si_sdr": "SI-SDR", "mel_distance": "mel distance",
                "pesq_nb": "PESQ-NB"}


def undefined_notes(results: list[FileResult]) -> list[str]:
    """Why cells read "undefined" (each metric's reason per file is in results.json): a note for
    each set of metrics undefined together for one reason (every one for a file too short to
    score; for silence, PESQ finds no speech and the others have an all-zero reference), naming
    them, the PESQ-WB one first."""
    by_metrics: dict[tuple[str, ...], Counter] = {}
    for result in results:
        together: dict[str, list[str]] = {}   # reason, without its metric's name -> those metrics
        for metric, name in METRIC_NAMES.items():
            if why := result.undefined.get(metric):
                together.setdefault(why.removeprefix(f"{name} undefined for "), []).append(metric)
        for why, metrics in together.items():
            by_metrics.setdefault(tuple(metrics), Counter())[why] += 1
    ordered = sorted(by_metrics, key=lambda metrics: ("pesq_wb" not in metrics, -len(metrics)))
    return [undefined_note(_listed([METRIC_NAMES[m] for m in metrics]), by_metrics[metrics], len(results))
            for metrics in ordered]


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def undefined_note(metric: str, reasons: Counter, coded: int) -> str:
    """Why a metric is undefined for some of the ``coded`` (file, row) pairs: the three commonest
    reasons, and a count of the rest."""
    shown = reasons.most_common(3)
    rest = sum(reasons.values()) - sum(count for _, count in shown)
    return (f"{metric} undefined in {sum(reasons.values())} of {coded} scores (files x rows): "
            + "; ".join(f"{count} x {reason}" for reason, count in shown)
            + (f"; {rest} x other reasons (in results.json)" if rest else ""))


def unpaired_rows(summaries: list[Summary]) -> str | None:
    """A note where rows' PESQ-WB means are over different numbers of files (a baseline that could
    not be aligned or failed on some): their means are not over the same files."""
    counts = {f"{s.system} {s.nominal_kbps:g}": s.files - s.undefined.get("pesq_wb", 0) for s in summaries}
    if len(set(counts.values())) <= 1:
        return None
    most = max(counts.values())
    fewer = ", ".join(f"{name}: {count}" for name, count in counts.items() if count < most)
    return (f"rows are not all over the same files: PESQ-WB was scored on {most} files for most rows, on fewer "
            f"for {fewer}; compare rows on the same files with scripts/compare_evals.py (in the source checkout)")
