"""Paired comparison of two systems from `codec eval` results: per-file differences, not means.

    python scripts/compare_evals.py A/results.csv B/results.csv [--metric pesq_wb]

Rows are paired by file and nominal bitrate (by file name where no path is in both: relative
paths from evaluations run in different folders); each system is the first codec named in its file
(one `codec eval` run can also hold both: pass the same file twice with --systems A B). For each
bitrate: both means, the mean difference B - A with its 95% confidence interval (Student's t
over the files) and on how many files B is better. Two systems whose means differ
by less than the spread of either mean can still differ clearly file by file, and the reverse.
"""

import argparse
import csv
import os
from pathlib import Path

import numpy as np

from codec.evaluation.stats import ci95_half_width

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
    try:   # the same file given as a relative or an absolute path (from the same folder) pairs up
        chosen = {(os.path.abspath(r["path"]), float(r["nominal_kbps"])): r for r in rows if r["codec"] == system}
    except (TypeError, ValueError):
        raise SystemExit(f"error: {path}: a row's nominal_kbps is not a number") from None
    if not chosen:
        systems = sorted({r["codec"] for r in rows})
        raise SystemExit(f"error: {path}: no rows for system {system!r} (it has {', '.join(systems)})")
    return system, chosen


def by_file_name(rows: dict[tuple[str, float], dict]) -> dict[tuple[str, float], dict]:
    """``rows`` keyed by file name instead of path; empty if two files share a name."""
    renamed = {(os.path.basename(path), kbps): row for (path, kbps), row in rows.items()}
    return renamed if len(renamed) == len(rows) else {}


def paired_difference(a: np.ndarray, b: np.ndarray, higher_is_better: bool = True) -> tuple[float, float, int]:
    """For paired values ``a``, ``b`` (one per file): the mean of ``b - a``, its 95% confidence
    half-width (Student's t; nan for one pair) and on how many files ``b`` is better (larger, or
    smaller for a metric where lower is better)."""
    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    return float(diff.mean()), ci95_half_width(diff), int((diff > 0 if higher_is_better else diff < 0).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="results.csv of codec eval with system A")
    parser.add_argument("b", type=Path, help="results.csv with system B (may be the same file, with --systems)")
    parser.add_argument("--metric", default="pesq_wb", choices=HIGHER_IS_BETTER + LOWER_IS_BETTER)
    parser.add_argument("--systems", nargs=2, metavar=("A", "B"), help="codec names to compare")
    args = parser.parse_args()
    name_a, a = read_rows(args.a, args.systems[0] if args.systems else None, args.metric)
    name_b, b = read_rows(args.b, args.systems[1] if args.systems else None, args.metric)
    if not set(a) & set(b):   # relative paths from evaluations run in other folders: pair by file name
        named_a, named_b = by_file_name(a), by_file_name(b)
        if set(named_a) & set(named_b):
            a, b = named_a, named_b
            print("note: no file path is in both; rows are paired by file name")
    rates_a, rates_b = sorted({key[1] for key in a}), sorted({key[1] for key in b})
    if not set(rates_a) & set(rates_b):
        raise SystemExit(f"error: no nominal bitrate in both: A ({name_a}) has {', '.join(f'{r:g}' for r in rates_a)} "
                         f"kbps, B ({name_b}) {', '.join(f'{r:g}' for r in rates_b)}")
    print(f"{args.metric}: B = {name_b} minus A = {name_a}")
    for kbps in sorted(set(rates_a) & set(rates_b)):
        common = [k for k in a if k[1] == kbps and k in b]
        keys = sorted(k for k in common if a[k][args.metric] and b[k][args.metric])
        x = np.array([float(a[k][args.metric]) for k in keys])
        y = np.array([float(b[k][args.metric]) for k in keys])
        if not keys:
            print(f"{kbps:g} kbps: no file in both" if not common else
                  f"{kbps:g} kbps: no file with a {args.metric} value in both")
            continue
        mean, ci, better = paired_difference(x, y, args.metric in HIGHER_IS_BETTER)
        spread = f"± {ci:.3f}" if len(keys) > 1 else "(one file: no interval)"
        print(f"{kbps:g} kbps, {len(keys)} files: A {x.mean():.3f}  B {y.mean():.3f}  "
              f"B - A {mean:+.3f} {spread}  B better on {better} of {len(keys)}")


if __name__ == "__main__":
    main()
