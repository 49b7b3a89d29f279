"""Paired comparison of two systems from `codec eval` results: per-file differences, not means.

    python scripts/compare_evals.py A/results.csv B/results.csv [--metric pesq_wb]

Rows are paired by file and nominal bitrate: by path (a relative one taken from the folder the
evaluation ran in, which its results.json records; for older runs, from the current folder), then
files left unpaired by file name where that name is unique; files in only one run, or without a
score in both, are counted in a note. Each system is the first codec named in its file (one `codec
eval` run can also hold both: pass the same file twice with --systems A B). For each bitrate: both
means, the mean difference B - A with its 95% confidence interval (Student's t over the files)
and on how many files B is better. Two systems whose means differ by less than the spread of either
mean can still differ clearly file by file, and the reverse. Exits 1 if no file is in both.
"""

import argparse
import csv
import json
import os
from collections import Counter
from pathlib import Path

from script_errors import first_paragraph, run_main  # first: a Ctrl-C while torch loads is one line

# isort: split
import numpy as np

from codec.evaluation.stats import ci95_half_width, interval_text

COLUMNS = ("codec", "path", "nominal_kbps")   # what pairs the rows (besides the metric)
HIGHER_IS_BETTER = ("pesq_wb", "pesq_nb", "stoi", "si_sdr")
LOWER_IS_BETTER = ("mel_distance", "encode_rtf", "decode_rtf", "measured_kbps", "overhead_kbps")


def read_rows(path: Path, system: str | None, metric: str) -> tuple[str, dict[tuple[str, float], dict]]:
    """The rows of ``system`` (default: the first codec named) in a ``codec eval`` results.csv,
    by (absolute file path, nominal kbps). Raises SystemExit naming the file and the problem."""
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        reason = getattr(error, "strerror", None) or error
        raise SystemExit(f"error: {path}: cannot read a results.csv ({reason})") from None
    if not rows:
        raise SystemExit(f"error: {path}: no result rows")
    if metric == "pesq_nb" and "pesq_nb" not in rows[0] and "pesq_wb" in rows[0]:
        raise SystemExit(f"error: {path}: no pesq_nb column; rerun codec eval with --pesq-nb")
    missing = [column for column in (*COLUMNS, metric) if column not in rows[0]]
    if missing:
        raise SystemExit(f"error: {path}: no column {', '.join(missing)}; is it the results.csv of codec eval "
                         f"(not results.json)?")
    system = system or rows[0]["codec"]
    folder = _working_directory(path)
    try:   # the same file given as a relative or an absolute path pairs up
        chosen = {(os.path.normpath(os.path.join(folder, r["path"])), float(r["nominal_kbps"])): r
                  for r in rows if r["codec"] == system}
    except (TypeError, ValueError):
        raise SystemExit(f"error: {path}: a row's nominal_kbps is not a number") from None
    if not chosen:
        systems = sorted({r["codec"] for r in rows})
        raise SystemExit(f"error: {path}: no rows for system {system!r} (it has {', '.join(systems)})")
    for row in chosen.values():   # the metric as a number, or None where it is undefined (empty, nan)
        try:
            value = float(row[metric]) if row[metric] else None
        except (TypeError, ValueError):
            raise SystemExit(f"error: {path}: {metric} of {row['path']} at {float(row['nominal_kbps']):g} kbps is "
                             f"{row[metric]!r}, not a number") from None
        row[metric] = value if value is not None and np.isfinite(value) else None
    return system, chosen


def _run_settings(csv_path: Path) -> dict:
    """The settings of the results.json beside ``csv_path``; empty where there is none to read."""
    try:
        settings = json.loads((csv_path.parent / "results.json").read_text())["settings"]
        return settings if isinstance(settings, dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _working_directory(csv_path: Path) -> str:
    """The folder the evaluation ran in (runs since 2026-12-06 record it); the current folder
    where it is not recorded."""
    folder = _run_settings(csv_path).get("working_directory")
    return folder if isinstance(folder, str) else os.getcwd()


def _mel_level(csv_path: Path) -> float | None:
    """The level the run's mel distance was scored at (None before runs recorded it, 2026-12-07)."""
    return _run_settings(csv_path).get("mel_distance_level_dbfs")


def paired(a: dict[tuple[str, float], dict], b: dict[tuple[str, float], dict]) -> tuple[list[tuple[dict, dict]], int]:
    """Pairs of rows of one file and bitrate: by path, then, among the rows left, by file name
    where that name is unique in each run as a whole (the same files reached by other paths; a
    name that two files share, spk1/001.wav and spk2/001.wav, never pairs); and how many of the
    pairs are by file name."""
    pairs = [(a[key], b[key]) for key in a if key in b]

    def by_name(rows, others):
        counts = Counter((os.path.basename(path), kbps) for path, kbps in rows)
        return {(os.path.basename(path), kbps): row for (path, kbps), row in rows.items()
                if (path, kbps) not in others and counts[(os.path.basename(path), kbps)] == 1}

    named_a, named_b = by_name(a, b), by_name(b, a)
    by_file_name = [(named_a[name], named_b[name]) for name in named_a if name in named_b]
    return pairs + by_file_name, len(by_file_name)


def paired_difference(a: np.ndarray, b: np.ndarray, higher_is_better: bool = True) -> tuple[float, float, int]:
    """For paired values ``a``, ``b`` (one per file): the mean of ``b - a``, its 95% confidence
    half-width (Student's t; nan for one pair) and on how many files ``b`` is better (larger, or
    smaller for a metric where lower is better)."""
    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    return float(diff.mean()), ci95_half_width(diff), int((diff > 0 if higher_is_better else diff < 0).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=first_paragraph(__doc__))
    parser.add_argument("a", type=Path, help="results.csv of codec eval with system A")
    parser.add_argument("b", type=Path, help="results.csv with system B (may be the same file, with --systems)")
    parser.add_argument("--metric", default="pesq_wb", choices=HIGHER_IS_BETTER + LOWER_IS_BETTER)
    parser.add_argument("--systems", nargs=2, metavar=("A", "B"), help="codec names to compare")
    args = parser.parse_args()
    name_a, a = read_rows(args.a, args.systems[0] if args.systems else None, args.metric)
    name_b, b = read_rows(args.b, args.systems[1] if args.systems else None, args.metric)
    rates_a, rates_b = sorted({key[1] for key in a}), sorted({key[1] for key in b})
    if not set(rates_a) & set(rates_b):
        raise SystemExit(f"error: no nominal bitrate in both: A ({name_a}) has {', '.join(f'{r:g}' for r in rates_a)} "
                         f"kbps, B ({name_b}) {', '.join(f'{r:g}' for r in rates_b)}")
    print(f"{args.metric}: B = {name_b} minus A = {name_a}")
    if args.metric == "mel_distance" and len({_mel_level(args.a), _mel_level(args.b)}) > 1:
        print("warning: the two runs computed the mel distance differently (since 2026-12-07 codec eval scores it "
              "with the input at -26 dBFS; earlier, at the file's own level): their differences mix the two")
    compared = 0
    for kbps in sorted(set(rates_a) & set(rates_b)):
        at_a = {key: row for key, row in a.items() if key[1] == kbps}
        at_b = {key: row for key, row in b.items() if key[1] == kbps}
        pairs, by_name = paired(at_a, at_b)
        scored = [(ra, rb) for ra, rb in pairs if ra[args.metric] is not None and rb[args.metric] is not None]
        notes = [f"left out {count} file{'s' if count > 1 else ''} only in {side}" for count, side in
                 ((len(at_a) - len(pairs), "A"), (len(at_b) - len(pairs), "B")) if count]
        if len(scored) < len(pairs):
            notes.append(f"left out {len(pairs) - len(scored)} without a {args.metric} value in both (undefined)")
        if by_name:
            notes.append(f"{by_name} paired by file name (their paths differ)")
        note = f"  ({'; '.join(notes)})" if notes else ""
        if not scored:
            what = "no file in both" if not pairs else f"no file with a {args.metric} value in both"
            print(f"{kbps:g} kbps: {what}{note}")
            continue
        compared += len(scored)
        x = np.array([ra[args.metric] for ra, _ in scored])
        y = np.array([rb[args.metric] for _, rb in scored])
        mean, _, better = paired_difference(x, y, args.metric in HIGHER_IS_BETTER)
        spread = interval_text(y - x)
        print(f"{kbps:g} kbps, {len(scored)} files: A {x.mean():.3f}  B {y.mean():.3f}  "
              f"B - A {mean:+.3f} {spread}  B better on {better} of {len(scored)}{note}")
    if not compared:
        raise SystemExit("error: no file has a score in both runs: nothing was compared")

if __name__ == "__main__":
    run_main(main)
