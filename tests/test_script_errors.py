"""scripts/script_errors.py: what the scripts share to check their arguments and end with one line."""

import argparse
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from script_errors import at_least, new_folder_problem  # noqa: E402  (a script's module, imported from its folder)


def test_a_new_folder_must_be_new_and_makeable(tmp_path):
    """What shrink_esc.py, grow_decoder.py and average_weights.py check before writing a model."""
    assert new_folder_problem(tmp_path / "new", "grown model") is None
    (tmp_path / "empty").mkdir()
    assert new_folder_problem(tmp_path / "empty", "grown model") is None
    (tmp_path / "file.txt").write_text("x")
    assert new_folder_problem(tmp_path / "file.txt" / "x", "grown model") == f"{tmp_path / 'file.txt' / 'x'} " \
        f"cannot be made: {tmp_path / 'file.txt'} is a file"
    for name in "abcd":
        (tmp_path / "full" / name).mkdir(parents=True)
    assert "full is not empty (it holds a, b, c, ...); choose a new folder for the grown model" in \
        new_folder_problem(tmp_path / "full", "grown model")


def test_numbers_must_be_finite_and_large_enough():
    """bench_*.py --files 0, --minutes nan, --stream-minutes -1 ended in a traceback or an empty benchmark."""
    assert at_least(1, int)("3") == 3 and at_least(0)("0.5") == 0.5
    for parse, text, message in [(at_least(1, int), "0", "'0': give a whole number of at least 1"),
                                 (at_least(1, int), "2.5", "'2.5' is not a whole number"),
                                 (at_least(0), "nan", "'nan': give a number of at least 0"),
                                 (at_least(0), "-1", "'-1': give a number of at least 0"),
                                 (at_least(0), "inf", "'inf': give a number of at least 0")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            parse(text)


def test_equalisation_settings_are_checked_before_any_scoring():
    """spectrum_equalisation.py --settings x (or a:6, 1:6,1:6) ended in a traceback, the last only after
    all the scoring."""
    import spectrum_equalisation

    assert spectrum_equalisation.equalisation_settings("1:6,0.5:12,1:12:tilt") == ["1:6", "0.5:12", "1:12:tilt"]
    for text, message in [("x", "'x': give alpha:max_db"), ("a:6", "'a:6': give"), ("nan:6", "'nan:6': give"),
                          ("1:0", "'1:0': give"), ("1:6:flat", "'1:6:flat': give"),
                          ("1:6,1:6", "a setting is given twice")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            spectrum_equalisation.equalisation_settings(text)


def test_the_dev_set_is_found_beside_the_checkout_from_any_folder_or_where_given(tmp_path, monkeypatch):
    import dev_speech

    monkeypatch.chdir(tmp_path)   # (it was looked for under the working folder by some scripts)
    assert dev_speech.DEV == REPO.parent / "shared" / "data" / "speech" / "dev"
    with pytest.raises(SystemExit, match=r"no dev files \(.flac\) there; .* or give --dev FOLDER"):
        dev_speech.dev_files(tmp_path)
    (tmp_path / "speaker").mkdir()
    for name in ("b.flac", "a.flac", "notes.txt"):
        (tmp_path / "speaker" / name).write_bytes(b"")
    assert dev_speech.dev_files(tmp_path) == [tmp_path / "speaker" / "a.flac", tmp_path / "speaker" / "b.flac"]
    (tmp_path / "linked").symlink_to(tmp_path / "speaker")   # a linked folder is followed, its files found once
    (tmp_path / "only_a_link").mkdir()
    (tmp_path / "only_a_link" / "speaker").symlink_to(tmp_path / "speaker")
    assert [path.name for path in dev_speech.dev_files(tmp_path / "only_a_link")] == ["a.flac", "b.flac"]
    parser = argparse.ArgumentParser()
    dev_speech.add_options(parser)
    assert parser.parse_args([]).dev == dev_speech.DEV
    assert parser.parse_args(["--dev", str(tmp_path)]).dev == tmp_path
    for bad, message in [("", "give a folder"), (str(tmp_path / "missing"), "no such folder"),
                         (str(tmp_path / "speaker" / "a.flac"), "a file, not a folder")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            dev_speech.dev_folder(bad)


def test_a_ctrl_c_before_run_main_is_one_line_with_sigints_exit_status():
    """A Ctrl-C while a script still imports torch reaches the top level before ``run_main`` runs:
    importing script_errors makes it one line there too."""
    done = subprocess.run([sys.executable, "-c", "import script_errors; raise KeyboardInterrupt"],
                          cwd=REPO / "scripts", capture_output=True, text=True, timeout=60)
    assert done.stderr == "error: interrupted\n"
    assert done.returncode in (130, -signal.SIGINT)   # (Python ends as killed by SIGINT, as a shell shows: 130)
    done = subprocess.run([sys.executable, "-c", "import script_errors; raise ValueError('kept')"],
                          cwd=REPO / "scripts", capture_output=True, text=True, timeout=60)
    assert "Traceback" in done.stderr and "ValueError: kept" in done.stderr   # other errors as Python prints them


@pytest.mark.parametrize("script", sorted(path.name for path in (REPO / "scripts").glob("*.py")
                                          if path.name not in ("script_errors.py", "dev_speech.py")))
def test_each_script_imports_script_errors_before_what_is_slow_to_import(script):
    lines = (REPO / "scripts" / script).read_text().splitlines()
    first = lines.index(next(line for line in lines if line.startswith("from script_errors import")))
    slow = [number for number, line in enumerate(lines) if line.startswith(("import ", "from "))
            and line.split()[1].split(".")[0] in ("numpy", "torch", "scipy", "soundfile", "codec", "dev_speech")]
    assert slow and first < min(slow)


def test_a_scripts_help_describes_it_with_its_whole_first_paragraph():
    from script_errors import first_paragraph

    assert first_paragraph("One line\nand its rest.\n\n    usage\n") == "One line and its rest."
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_entropy.py"), "--help"],
                          capture_output=True, text=True, timeout=120)
    assert "(all bytes counted)." in " ".join(done.stdout.split())   # (was cut after its first line)
