"""scripts/compare_evals.py: paired differences between two `codec eval` results."""

import csv
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = str(REPO / "scripts" / "compare_evals.py")


def results(path, codec, rows, metric="pesq_wb"):
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["path", "codec", "nominal_kbps", metric])
        writer.writeheader()
        writer.writerows({"path": p, "codec": codec, "nominal_kbps": "6.0", metric: v} for p, v in rows)
    return str(path)


def compare(a, b, cwd, *options):
    result = subprocess.run([sys.executable, SCRIPT, a, b, *options], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(a, b, cwd):
    result = subprocess.run([sys.executable, SCRIPT, a, b], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 1 and "error: no file has a score in both runs" in result.stderr, result.stderr
    return result.stdout


def test_files_pair_up_whether_named_relative_or_absolute(tmp_path):
    a = results(tmp_path / "a.csv", "old", [("data/x.flac", "2.0"), ("data/y.flac", "3.0"), ("data/z.flac", "2.5")])
    b = results(tmp_path / "b.csv", "new", [(str(tmp_path / "data/x.flac"), "2.5"),
                                            (str(tmp_path / "data/y.flac"), "3.1"), ("data/other.flac", "4.0")])
    out = compare(a, b, tmp_path)
    assert "B = new minus A = old" in out
    assert "6 kbps, 2 files: A 2.500  B 2.800  B - A +0.300" in out and "B better on 2 of 2" in out
    assert "(left out 1 file only in A; left out 1 file only in B)" in out   # z and other: counted, not silent
    lone = results(tmp_path / "c.csv", "new", [("data/w.flac", "1.0")])
    assert "6 kbps: no file in both  (left out 3 files only in A; left out 1 file only in B)" in \
        refused(a, lone, tmp_path)   # nothing compared: exit 1
    unscored = results(tmp_path / "d.csv", "new", [("data/x.flac", "")])
    assert "left out 1 without a pesq_wb value in both (undefined)" in refused(a, unscored, tmp_path)


def test_relative_paths_are_taken_from_the_folder_the_evaluation_ran_in(tmp_path):
    """results.json records it: the same two runs compare alike from any folder."""
    import json

    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "b").mkdir(parents=True)
    a = results(tmp_path / "runs" / "a" / "results.csv", "old", [("in/x.flac", "2.0"), ("in/y.flac", "3.0")])
    (tmp_path / "runs" / "a" / "results.json").write_text(json.dumps({"settings": {"working_directory":
                                                                                   str(tmp_path)}}))
    b = results(tmp_path / "runs" / "b" / "results.csv", "new", [(str(tmp_path / "in" / "x.flac"), "2.5"),
                                                                 ("in/y.flac", "3.5")])
    (tmp_path / "runs" / "b" / "results.json").write_text(json.dumps({"settings": {"working_directory":
                                                                                   str(tmp_path)}}))
    for cwd in (tmp_path, tmp_path / "runs", "/"):
        out = compare(a, b, cwd)
        assert "6 kbps, 2 files: A 2.500  B 3.000" in out and "left out" not in out and "by file name" not in out


def test_evaluations_run_from_other_folders_pair_by_file_name(tmp_path):
    a = results(tmp_path / "a.csv", "old", [("x.flac", "2.0"), ("y.flac", "3.0")])   # run inside data/
    b = results(tmp_path / "b.csv", "new", [("/elsewhere/data/x.flac", "2.5"), ("/elsewhere/data/y.flac", "3.5")])
    out = compare(a, b, tmp_path)
    assert "6 kbps, 2 files:" in out and "(2 paired by file name (their paths differ))" in out
    twice = results(tmp_path / "c.csv", "new", [("one/x.flac", "2.5"), ("two/x.flac", "3.5")])
    assert "left out 2 files only in A" in refused(a, twice, tmp_path)   # a name twice: no guessing
    # per-speaker numbering: spk2/001 is not spk3/001, though each is the only 001 left unpaired
    c = results(tmp_path / "d.csv", "old", [("/x/spk1/001.wav", "2.0"), ("/x/spk2/001.wav", "3.0")])
    d = results(tmp_path / "e.csv", "new", [("/x/spk1/001.wav", "2.5"), ("/x/spk3/001.wav", "1.0")])
    out = compare(c, d, tmp_path)
    assert "6 kbps, 1 files:" in out and "by file name" not in out


def test_bad_inputs_are_one_line_errors(tmp_path):
    a = results(tmp_path / "a.csv", "old", [("x.flac", "2.0")])
    word = results(tmp_path / "word.csv", "new", [("x.flac", "abc")])
    (tmp_path / "notes.txt").write_text("not,a,results file\n1,2,3\n")
    for args, message in [([str(tmp_path / "missing.csv"), a], "missing.csv: cannot read a results.csv (No such file"),
                          ([str(tmp_path / "notes.txt"), a], "notes.txt: no column codec, path, nominal_kbps, pesq_wb"),
                          ([a, a, "--systems", "old", "new"], "a.csv: no rows for system 'new' (it has old)"),
                          ([a, word], "word.csv: pesq_wb of x.flac at 6 kbps is 'abc', not a number")]:
        result = subprocess.run([sys.executable, SCRIPT, *args], cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_where_lower_is_better_a_smaller_b_is_better(tmp_path):
    a = results(tmp_path / "a.csv", "old", [("x.flac", "0.50"), ("y.flac", "0.40")], metric="mel_distance")
    b = results(tmp_path / "b.csv", "new", [("x.flac", "0.45"), ("y.flac", "0.42")], metric="mel_distance")
    assert "B better on 1 of 2" in compare(a, b, tmp_path, "--metric", "mel_distance")   # x got smaller, y larger
    result = subprocess.run([sys.executable, SCRIPT, a, b, "--metric", "setting"], capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice: 'setting'" in result.stderr   # a text column: no difference


def test_no_common_bitrate_and_a_missing_pesq_nb_say_what_to_do(tmp_path):
    ours = results(tmp_path / "a.csv", "ours", [("x.flac", "2.0")])
    with (tmp_path / "c.csv").open("w", newline="") as handle:   # Codec2 runs at 3.2 kbps, not 6
        csv.writer(handle).writerows([["path", "codec", "nominal_kbps", "pesq_wb"], ["x.flac", "codec2", "3.2", "2"]])
    for b, options, message in [
        (str(tmp_path / "c.csv"), [], "error: no nominal bitrate in both: A (ours) has 6 kbps, B (codec2) 3.2"),
        (ours, ["--metric", "pesq_nb"], "no pesq_nb column; rerun codec eval with --pesq-nb"),
    ]:
        result = subprocess.run([sys.executable, SCRIPT, ours, b, *options], cwd=tmp_path, capture_output=True,
                                text=True)
        assert result.returncode == 1 and message in result.stderr, result.stderr


def test_one_paired_file_has_no_interval(tmp_path):
    a = results(tmp_path / "a.csv", "old", [("x.flac", "2.0"), ("y.flac", "3.0")])
    b = results(tmp_path / "b.csv", "new", [("x.flac", "2.5"), ("y.flac", "nan")])   # nan: undefined, as empty
    assert "6 kbps, 1 files: A 2.000  B 2.500  B - A +0.500 (one file: no interval)  B better on 1 of 1  " \
        "(left out 1 without a " \
        "pesq_wb value in both (undefined))" in compare(a, b, tmp_path)


def test_mel_distances_of_two_definitions_are_compared_with_a_warning(tmp_path):
    import json

    runs = []
    for name, settings in (("old", {}), ("new", {"mel_distance_level_dbfs": -26.0})):
        (tmp_path / name).mkdir()
        runs.append(results(tmp_path / name / "results.csv", name, [("x.flac", "0.5"), ("y.flac", "0.4")],
                            metric="mel_distance"))
        (tmp_path / name / "results.json").write_text(json.dumps({"settings": settings}))
    assert "warning: the two runs computed the mel distance differently" in compare(*runs, tmp_path, "--metric",
                                                                                    "mel_distance")
    assert "warning" not in compare(runs[1], runs[1], tmp_path, "--metric", "mel_distance")
