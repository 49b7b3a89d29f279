"""`codec eval`: metric edge cases never crash or give NaN; alignment; end-to-end reports."""

import json
import math
import os
import shutil
import warnings
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from codec.datasets import find_inputs
from codec.errors import CodecError
from codec.evaluation import evaluate
from codec.evaluation.alignment import align
from codec.evaluation.evaluate import EvalSettings, run_evaluation, summarize
from codec.evaluation.metrics import METRIC_RATE, mel_distance, score_pair, si_sdr
from tests.conftest import tone, write_audio

rng = np.random.default_rng(0)


def speechlike(seconds: float) -> np.ndarray:
    """Amplitude-modulated harmonics: enough for PESQ to find utterances."""
    t = np.arange(int(seconds * METRIC_RATE)) / METRIC_RATE
    pitch = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * 0.7 * t)) / METRIC_RATE
    voiced = sum(np.sin(k * pitch) / k for k in range(1, 20))
    syllables = np.maximum(np.sin(2 * np.pi * 2.5 * t), 0) ** 2  # bursts separated by pauses
    return 0.2 * voiced * syllables + 1e-4 * rng.standard_normal(len(t))


def assert_defined_or_explained(scores):
    for name, score in scores.items():
        if score.value is None:
            assert score.reason, name
        else:
            assert not math.isnan(score.value), name


def test_all_zero_reference():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)   # a library's warning must not reach the user
        scores = score_pair(np.zeros(3 * METRIC_RATE), 0.01 * rng.standard_normal(3 * METRIC_RATE))
    assert scores["pesq_wb"].value is None and "no utterances" in scores["pesq_wb"].reason
    assert scores["si_sdr"].value is None and scores["stoi"].value is None
    assert scores["mel_distance"].value is None and "all-zero reference" in scores["mel_distance"].reason
    assert_defined_or_explained(scores)


def test_a_decoded_signal_of_digital_silence_is_scored_or_explained():
    reference = speechlike(2)
    for silent in (np.zeros_like(reference), np.full_like(reference, 1e-30)):
        scores = score_pair(reference, silent)
        assert scores["pesq_wb"].value is None and "decoded signal" in scores["pesq_wb"].reason
        assert_defined_or_explained(scores)
    scores = score_pair(reference, np.zeros_like(reference))
    assert "digital silence" in scores["si_sdr"].reason and scores["stoi"].value is not None
    # SI-SDR does not see the decoded signal's level (an absolute floor once gave 1e-30 of it +355 dB)
    assert si_sdr(reference, np.full_like(reference, 1e-30)).value == pytest.approx(
        si_sdr(reference, np.ones_like(reference)).value) and si_sdr(reference, np.ones_like(reference)).value < -50


def test_the_mel_distance_does_not_depend_on_the_files_level():
    reference = speechlike(2)
    degraded = reference + 0.02 * np.random.default_rng(5).standard_normal(len(reference))
    loud = mel_distance(reference, degraded).value
    for gain in (0.03, 0.001):   # -30 and -60 dB: these read 2x and 6x smaller before
        assert mel_distance(gain * reference, gain * degraded).value == pytest.approx(loud, rel=1e-4)
    for gain in (1e-9, 1e-40, 1e-200):   # below -140 dBFS: undefined, not NaN (nor librosa's error)
        assert "below -140 dBFS" in mel_distance(gain * reference, 0.1 * degraded).reason


def test_zeros_with_one_burst():
    reference = np.zeros(2 * METRIC_RATE)
    reference[METRIC_RATE:METRIC_RATE + METRIC_RATE // 10] = speechlike(0.1)
    assert_defined_or_explained(score_pair(reference, reference + 1e-4 * rng.standard_normal(len(reference))))


def test_clip_shorter_than_a_quarter_second():
    short = speechlike(3)[:200]  # 100 samples at 32 kHz are 50 at 16 kHz; any clip under 0.25 s
    scores = score_pair(short, short)
    assert all(s.value is None and "shorter than" in s.reason for s in scores.values())


def test_degraded_37_samples_shorter_is_aligned():
    reference = speechlike(3)
    degraded = reference[:-37] + 0.003 * rng.standard_normal(len(reference) - 37)
    alignment = align(reference, degraded, 1600)
    assert alignment.lag == 0 and len(alignment.degraded) == len(reference)
    scores = score_pair(reference, alignment.degraded)
    assert scores["pesq_wb"].value is not None and scores["stoi"].value > 0.9


def test_delay_is_measured_and_removed():
    reference = speechlike(2)
    delayed = np.concatenate([np.zeros(123), reference])
    alignment = align(reference, delayed, 1600)
    assert alignment.lag == 123
    np.testing.assert_allclose(alignment.degraded, reference)


def test_no_shift_beyond_max_lag():
    """The waveform search stays inside ``max_lag`` too: 0 scores the signal as decoded."""
    reference = speechlike(2)
    delayed = np.concatenate([np.zeros(20), reference])
    assert align(reference, delayed, 10).lag == 10
    alignment = align(reference, delayed, 0)
    assert alignment.lag == 0 and alignment.problem is None
    np.testing.assert_array_equal(alignment.degraded, delayed[:len(reference)])


def test_a_few_lags_by_dot_products_match_the_whole_correlation():
    """The fine step's dot products give the lag and correlation that the FFT correlation gives."""
    from scipy.signal import correlate

    from codec.evaluation.alignment import _best_lag

    for _ in range(200):
        reference, degraded = rng.standard_normal(rng.integers(1, 300)), rng.standard_normal(rng.integers(1, 300))
        low = int(rng.integers(-400, 400))
        high = low + int(rng.integers(0, 60))
        full = correlate(degraded, reference, mode="full")
        lags = np.arange(-len(reference) + 1, len(degraded))
        window = (lags >= low) & (lags <= high)
        energy = np.sqrt(np.dot(reference, reference) * np.dot(degraded, degraded))
        expected = (int(lags[window][np.argmax(full[window])]), float(full[window].max() / energy)) \
            if window.any() else (0, 0.0)
        lag, correlation = _best_lag(reference, degraded, low, high)
        assert lag == expected[0] and correlation == pytest.approx(expected[1], abs=1e-12)


def test_our_codecs_are_scored_as_decoded(tiny_model_dir, tmp_path):
    """A model of this suite removes its own latency when decoding: no lag search (which, on a
    codec that does not keep the phase, only finds noise)."""
    write_audio(tmp_path / "speech.wav", speechlike(2), 16000)
    results, _, _ = run_evaluation(find_inputs(tmp_path), EvalSettings(str(tiny_model_dir), [1.5, 6.0]))
    assert len(results) == 2 and all(result.lag_samples_16k == 0 for result in results)


def test_si_sdr_with_all_zero_target():
    assert si_sdr(np.zeros(1000), rng.standard_normal(1000)).value is None


def test_a_time_aligned_pair_is_scored_however_unlike_the_input():
    reference = speechlike(1)
    noise = 0.1 * np.random.default_rng(4).standard_normal(len(reference))
    assert align(reference, noise, 1600).problem.startswith("could not align")
    assert align(reference, noise, 0).problem is None          # a broken decoder: scored, and badly
    assert score_pair(reference, align(reference, noise, 0).degraded)["pesq_wb"].value < 1.5


def test_nan_in_decoded_signal():
    reference = speechlike(1)
    degraded = reference.copy()
    degraded[100] = np.nan
    assert align(reference, degraded, 100).problem
    assert all(s.value is None and "NaN" in s.reason for s in score_pair(reference, degraded).values())


def test_summary_has_no_nan_for_edge_case_files(tiny_model_dir, tmp_path):
    folder = tmp_path / "edge"
    folder.mkdir()
    write_audio(folder / "zeros.wav", np.zeros(3 * 16000), 16000)
    burst = np.zeros(2 * 16000)
    burst[16000:17600] = speechlike(0.1)
    write_audio(folder / "burst.wav", burst, 16000)
    write_audio(folder / "tiny_32k.wav", 0.1 * rng.standard_normal(100), 32000)
    write_audio(folder / "tone.flac", tone(1.0, 22050), 22050)
    results, notes, _ = run_evaluation(find_inputs(folder), EvalSettings(str(tiny_model_dir), [1.5, 6.0]))
    summaries = summarize(results)
    assert len(results) == 8
    for summary in summaries:
        for value in [*summary.mean.values(), *summary.ci95.values()]:
            assert value is None or not math.isnan(value)
        assert summary.undefined["pesq_wb"] >= 2   # the zeros and the 100-sample clip


def test_a_folders_hidden_files_are_left_out(tmp_path):
    write_audio(tmp_path / "a.wav", speechlike(0.3), 16000)
    (tmp_path / ".venv" / "data").mkdir(parents=True)      # a library's test audio, say
    write_audio(tmp_path / ".venv" / "data" / "b.wav", speechlike(0.3), 16000)
    write_audio(tmp_path / ".a.wav.partial.wav", speechlike(0.3), 16000)
    assert find_inputs(tmp_path) == [tmp_path / "a.wav"]


def test_linked_folders_are_searched_once(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_audio(elsewhere / "b.wav", speechlike(0.3), 16000)
    data = tmp_path / "data"
    data.mkdir()
    write_audio(data / "a.wav", speechlike(0.3), 16000)
    (data / "more").symlink_to(elsewhere)
    (data / "again").symlink_to(elsewhere)           # the same folder twice ...
    (elsewhere / "loop").symlink_to(data)            # ... and a loop back up
    found = find_inputs(data)
    assert data / "a.wav" in found and len(found) == 2 and {p.name for p in found} == {"a.wav", "b.wav"}
    # a link to a folder of the tree itself: the folder is found under its own name, whatever sorts first
    (data / "z_real").mkdir()
    write_audio(data / "z_real" / "c.wav", speechlike(0.3), 16000)
    (data / "a_link").symlink_to(data / "z_real")
    assert data / "z_real" / "c.wav" in find_inputs(data) and len(find_inputs(data)) == 3


def test_manifest_inputs(tmp_path):
    audio = write_audio(tmp_path / "a.wav", tone(0.3, 16000), 16000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "list.tsv").write_text("path\tspeaker\na.wav\tx\n")
    (tmp_path / "list.jsonl").write_text(json.dumps({"path": "a.wav"}) + "\n")
    assert find_inputs(tmp_path / "sub" / "list.tsv") == [tmp_path / "a.wav"]
    assert find_inputs(tmp_path / "list.jsonl") == [audio]


@pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("c2enc") is None,
                    reason="ffmpeg and codec2 are not installed (.ci/run installs them)")
def test_end_to_end_on_dev_files_with_baselines(tiny_model_dir, dev_files, tmp_path):
    folder = tmp_path / "dev3"
    folder.mkdir()
    for path in dev_files[:3]:
        shutil.copy(path, folder / path.name)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["eval", str(folder), "--model", str(tiny_model_dir), "--bitrates", "3,6",
                                      "--baselines", "opus,opus-vbr,codec2", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    systems = {(s["system"], s["nominal_kbps"]) for s in summary}
    assert {("tiny-16k", 3.0), ("tiny-16k", 6.0), ("opus", 6.0), ("codec2", 3.2), ("codec2", 1.3)} <= systems
    opus = next(s for s in summary if s["system"] == "opus")
    assert 5.5 < opus["measured_kbps"] < 6.5 and 1.0 < opus["mean"]["pesq_wb"] < 4.6
    vbr = next(s for s in summary if s["system"] == "opus-vbr")
    assert vbr["setting"] == "libopus voip VBR" and vbr["nominal_kbps"] == 6.0
    assert 3.0 < vbr["measured_kbps"] < 7.0 and 1.0 < vbr["mean"]["pesq_wb"] < 4.6
    for name in ("results.json", "results.csv", "rate_distortion.png", "spectrograms.png"):
        assert (out / name).stat().st_size > 0
    assert "opus skipped at 3 kbps" in result.output and "opus-vbr skipped at 3 kbps" in result.output


def test_eval_keeps_earlier_results_unless_forced(tiny_model_dir, tmp_path):
    source = tmp_path / "in.wav"
    write_audio(source, speechlike(1.0), 16000)
    out = tmp_path / "report"
    command = ["eval", str(source), "--model", str(tiny_model_dir), "--bitrates", "6", "--out", str(out)]
    first = CliRunner().invoke(app, command)
    assert first.exit_code == 0 and "channels" not in first.output   # mono: no note about channels
    before = (out / "results.json").read_bytes()
    refused = CliRunner().invoke(app, command)
    assert refused.exit_code == 1 and "holds results already (results.json" in refused.output
    for wrong, message in ((["--jobs", "0"], "--jobs 0: must be at least 1"),   # named first: --force
                           (["--baselines", "foo"], "unknown baseline 'foo'")):   # would not have fixed them
        result = CliRunner().invoke(app, [*command, *wrong])
        assert result.exit_code == 1 and message in result.output and "holds results" not in result.output
    assert (out / "results.json").read_bytes() == before
    assert CliRunner().invoke(app, [*command, "--force"]).exit_code == 0


def test_eval_notes_first_channels_skipped_files_and_si_sdr_and_names_the_default_model(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_audio(folder / "mono.wav", speechlike(1.0), 16000)
    write_audio(folder / "stereo.wav", np.stack([speechlike(1.0)] * 2, axis=1), 16000)
    for name in ("notes.txt", "take.m4a", ".DS_Store"):   # left out, and said so
        (folder / name).write_bytes(b"x")
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["eval", str(folder), "--bitrates", "6", "--baselines", "none",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 of 2 files have several channels: each was coded and scored on its first" in result.output
    assert ("skipped 1 audio file in a format not read (.m4a: convert it first, e.g. ffmpeg -i in.m4a in.wav), 1 file "
            "that is not audio (.txt) and 1 hidden file or folder (.DS_Store)") in result.output
    assert "esc-16k-small scored below 0 dB: decoded speech need not follow the input's waveform" in result.output
    assert "baselines were scored" not in result.output   # (none ran)
    assert json.loads((out / "results.json").read_text())["settings"]["model"] == "esc-16k-small"


def test_float_samples_beyond_full_scale_are_limited_as_encode_limits_them(tiny_model_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_audio(folder / "hot.wav", 4.0 * speechlike(1.0), 16000, subtype="FLOAT")
    write_audio(folder / "fine.wav", speechlike(1.0), 16000)
    out = tmp_path / "report"
    command = ["eval", str(folder), "--model", str(tiny_model_dir), "--bitrates", "6", "--baselines", "none"]
    result = CliRunner().invoke(app, [*command, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 of 2 files hold samples beyond ±1.0 full scale" in result.output
    # integer-scale samples held in floats: left out, as codec encode refuses them (not scored as a square wave)
    write_audio(folder / "hot.wav", 32767 * speechlike(1.0), 16000, subtype="FLOAT")
    result = CliRunner().invoke(app, [*command, "--out", str(tmp_path / "report2")])
    assert result.exit_code == 1 and "hot.wav: samples reach" in " ".join(result.output.split()), result.output
    files = json.loads((out / "results.json").read_text())["files"]
    assert sorted(f["limited_samples"] > 0 for f in files) == [False, True]
    assert all(f["scores"]["pesq_wb"] is not None for f in files)


def test_a_truncated_file_is_noted_as_encode_warns_of_it(tiny_model_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    whole = write_audio(tmp_path / "whole.wav", speechlike(1.0), 16000, subtype="PCM_16").read_bytes()
    (folder / "cut.wav").write_bytes(whole[:len(whole) // 2])   # the header still announces 1 s
    write_audio(folder / "fine.wav", speechlike(1.0), 16000)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["eval", str(folder), "--model", str(tiny_model_dir), "--bitrates", "6",
                                      "--baselines", "none", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 of 2 files are truncated" in result.output and "cut.wav" in result.output
    files = json.loads((out / "results.json").read_text())["files"]
    assert sorted(f["missing_samples"] for f in files)[0] == 0 and max(f["missing_samples"] for f in files) > 7000
    assert "weighted by duration" in result.output   # kbps and real-time factors are not means over files


def test_empty_path_options_are_refused_not_taken_for_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for arguments, option in [(["eval", ".", "--out", ""], "--out"), (["export", "--out", ""], "--out"),
                              (["stream", "--input", "", "--output", "x.wav"], "--input"),
                              (["stream", "--input", "a.wav", "--output", ""], "--output"),
                              (["stream", "--input", "a.wav", "--save", ""], "--save")]:
        result = CliRunner().invoke(app, arguments)
        assert result.exit_code == 2 and f"Invalid value for '{option}" in result.output, arguments
        assert "an empty path was given" in result.output
    assert list(tmp_path.iterdir()) == []


def test_an_output_folder_that_cannot_be_written_is_refused_before_coding(tmp_path, monkeypatch):
    source = write_audio(tmp_path / "in.wav", speechlike(1.0), 16000)
    (tmp_path / "file").write_text("")
    command = ["eval", str(source), "--bitrates", "6", "--baselines", "none", "--out"]
    result = CliRunner().invoke(app, [*command, str(tmp_path / "file" / "report")])
    assert result.exit_code == 1 and f"{tmp_path / 'file'} is a file, not a folder" in result.output
    for name in ("eval", "export"):   # '-' is stdout elsewhere: not a folder named '-'
        arguments = [*command, "-"] if name == "eval" else ["export", "--out", "-"]
        result = CliRunner().invoke(app, arguments)
        assert result.exit_code == 1 and "--out -: the results are several files" in result.output, name
    monkeypatch.setattr("os.access", lambda path, mode: False)   # as on a read-only disk (root may write anywhere)
    monkeypatch.setattr("codec.evaluation.evaluate.run_evaluation",
                        lambda *a, **k: pytest.fail("coded before the output folder was checked"))
    result = CliRunner().invoke(app, [*command, str(tmp_path / "new" / "report")])
    assert result.exit_code == 1 and f"cannot write in {tmp_path}" in result.output, result.output
    assert not (tmp_path / "new").exists()



@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc (Linux)")
def test_an_output_folder_that_cannot_be_created_is_named_as_out(tiny_model_dir, tmp_path):
    source = write_audio(tmp_path / "in.wav", speechlike(1.0), 16000)
    result = CliRunner().invoke(app, ["eval", str(source), "--model", str(tiny_model_dir), "--bitrates", "6",
                                      "--baselines", "none", "--out", "/proc/no-such-report"])
    assert result.exit_code == 1 and "--out /proc/no-such-report: cannot create the folder" in result.output


def test_eval_leaves_out_unreadable_files_and_checks_its_bitrates(tiny_model_dir, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a_empty.wav").write_bytes(b"")                 # first: the spectrograms are of the next file
    write_audio(folder / "b.wav", speechlike(1.0), 16000)
    out = tmp_path / "report"
    command = ["eval", str(folder), "--model", str(tiny_model_dir), "--out", str(out), "--json"]
    result = CliRunner().invoke(app, [*command, "--bitrates", "6,6"])
    assert result.exit_code == 1, result.output   # as a batch that could not code every file
    assert "1 of 2 files could not be evaluated (unreadable, or audio no codec can take) and were left out" \
        in " ".join(result.output.split())
    stdin = CliRunner().invoke(app, ["eval", "-", "--model", str(tiny_model_dir), "--out", str(out)])
    assert stdin.exit_code == 1 and "-: no such file or folder (stdin is not read here" in stdin.output
    summaries = json.loads(result.stdout)
    assert [(s["nominal_kbps"], s["files"]) for s in summaries] == [(6.0, 1)]
    assert "left out" in result.output and "a_empty.wav" in result.output
    assert summaries[0]["undefined"]["pesq_wb"] == 0   # an untrained model is scored (badly), not left out
    assert (out / "spectrograms.png").exists() and (out / "results.csv").exists()
    for bitrates in ("", " , ", "six"):
        bad = CliRunner().invoke(app, [*command, "--bitrates", bitrates, "--out", str(tmp_path / "none")])
        assert bad.exit_code == 1 and "expected comma-separated numbers" in bad.output
        assert "internal error" not in bad.output and not (tmp_path / "none").exists()
    (folder / "b.wav").unlink()
    nothing = CliRunner().invoke(app, [*command, "--bitrates", "6", "--force"])
    assert nothing.exit_code == 1 and "no file could be evaluated" in nothing.output


def test_a_one_sample_file_is_too_short_not_misaligned(tiny_model_dir, tmp_path):
    folder = tmp_path / "short"
    folder.mkdir()
    write_audio(folder / "one.wav", np.array([0.1]), 16000)
    results, _, _ = run_evaluation(find_inputs(folder), EvalSettings(str(tiny_model_dir), [6.0]))
    assert results and all(reason.startswith("shorter than") for r in results for reason in r.undefined.values())


def test_eval_checks_bitrates_and_baselines_before_its_progress_bar(tiny_model_dir, tmp_path, monkeypatch):
    import rich.progress

    def no_progress(self):
        raise AssertionError("the progress bar started before the settings were checked")

    monkeypatch.setattr(rich.progress.Progress, "start", no_progress)
    source = tmp_path / "in.wav"
    write_audio(source, speechlike(1.0), 16000)
    command = ["eval", str(source), "--model", str(tiny_model_dir), "--out", str(tmp_path / "report")]
    for option, value, message in (("--bitrates", "7", "--bitrates: bitrate 7 kbps is not supported by"),
                                   ("--baselines", "foo", "--baselines: unknown baseline"),
                                   ("--baselines", "none,opus", "'none' means no baselines: give it alone")):
        result = CliRunner().invoke(app, [*command, option, value])
        assert result.exit_code == 1 and message in result.output, result.output
        assert result.output.startswith("error:"), result.output   # one line, no empty one before it


def test_eval_with_entropy_and_a_model_without_one_names_eval(tiny_model_dir, tmp_path):
    source = write_audio(tmp_path / "in.wav", speechlike(1.0), 16000)
    result = CliRunner().invoke(app, ["eval", str(source), "--model", str(tiny_model_dir), "--entropy",
                                      "--out", str(tmp_path / "report")])
    message = " ".join(result.output.split())
    assert result.exit_code == 1 and "has no entropy model (its folder" in message
    assert "entropy_config.json); evaluate without --entropy" in message


def test_confidence_interval_uses_students_t():
    from codec.evaluation.stats import ci95_half_width, interval_text

    assert abs(ci95_half_width([1.0, 2.0, 3.0]) - 4.3027 / np.sqrt(3)) < 1e-3   # t(0.975, 2 d.o.f.) = 4.303
    assert abs(ci95_half_width(np.arange(40.0)) / (1.96 * np.arange(40.0).std(ddof=1) / np.sqrt(40)) - 1.032) < 1e-3
    assert np.isnan(ci95_half_width([2.0]))
    # as the scripts print it: one file has no interval (robustness.py printed "± nan", others "± 0.000")
    assert interval_text(np.array([1.0, 2.0, 3.0])) == "± 2.484" and interval_text(np.array([2.0])) == \
        "(one file: no interval)"


def test_an_empty_file_gets_an_empty_opus_baseline_without_running_ffmpeg(monkeypatch):
    from codec.evaluation import systems

    monkeypatch.setattr(systems, "_ffmpeg_encoders", lambda: frozenset({"libopus"}))   # (however the cache stands)
    monkeypatch.setattr(systems, "_run", lambda *_: pytest.fail("ffmpeg ran on an empty file"))
    opus = next(s for s in systems.baseline_systems(["opus"], [6.0])[0] if isinstance(s, systems.FfmpegCodec))
    coded = opus.code(np.zeros((0, 1)), 16000)
    assert len(coded.audio) == 0 and coded.payload_bits == 0


@pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="needs ffmpeg, ffprobe")
def test_opus_payload_counts_the_packets_that_carry_side_data():
    # Opus' first and last packets carry samples to skip: ffprobe's CSV printed them as "13,"
    from codec.evaluation import systems

    opus = next(s for s in systems.baseline_systems(["opus"], [6.0])[0] if isinstance(s, systems.FfmpegCodec))
    one_packet = opus.code(tone(10 / 16000, 16000), 16000)   # 10 samples: one packet, with side data
    assert one_packet.payload_bits > 0
    second = opus.code(tone(1.0, 16000), 16000)   # 50-51 packets of 20 ms at 6 kbps: 6000 bits and more
    assert 6000 <= second.payload_bits < 6600 and second.overhead_bits > 0


def test_tone_signals_and_their_returned_levels(tiny_model):
    from codec.evaluation.tones import LEVEL_DBFS, TEST_SIGNALS, level_db, make_signal, returned_levels

    for name in TEST_SIGNALS:
        assert level_db(make_signal(name)) == pytest.approx(LEVEL_DBFS, abs=0.2)
    spectrum = np.abs(np.fft.rfft(make_signal("1 kHz")))
    assert np.argmax(spectrum) * 16000 / (2 * (len(spectrum) - 1)) == pytest.approx(1000, abs=1)
    levels = returned_levels(tiny_model, 6.0)
    assert list(levels) == list(TEST_SIGNALS) and all(np.isfinite(v) for v in levels.values())


def test_tone_check_script_names_bad_arguments(tiny_model_dir):
    import subprocess
    import sys

    from tests.conftest import REPO

    script = [sys.executable, str(REPO / "scripts" / "tone_check.py")]
    for args, code, message in [(["no-such-model"], 1, "error: model 'no-such-model' not found"),
                                ([str(tiny_model_dir), "--kbps", "7"], 1, "bitrate 7 kbps is not supported"),
                                ([str(tiny_model_dir), "--kbps", "6k"], 2, "--kbps '6k': give comma-separated")]:
        result = subprocess.run([*script, *args], cwd=REPO, capture_output=True, text=True)
        assert result.returncode == code and message in result.stderr and "Traceback" not in result.stderr


def test_eval_without_bitrates_scores_the_models_own(tiny_model_dir, tmp_path):
    single = shutil.copytree(tiny_model_dir, tmp_path / "two-rates")
    config = json.loads((single / "config.json").read_text())
    (single / "config.json").write_text(json.dumps({**config, "bitrates_kbps": [3.0, 12.0]}))
    source = write_audio(tmp_path / "in.wav", speechlike(1.0), 16000)
    result = CliRunner().invoke(app, ["eval", str(source), "--model", str(single), "--out", str(tmp_path / "r"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(s["nominal_kbps"] for s in json.loads(result.stdout)) == [3.0, 12.0]


@pytest.mark.skipif(os.name != "posix", reason="file names of any bytes are a POSIX file system's")
def test_a_file_name_that_is_not_utf8_is_scored_and_listed_as_its_bytes(tiny_model_dir, tmp_path):
    name = os.fsdecode(b"caf\xe9.wav")   # Latin-1, as an older system may have named it
    source = tmp_path / name
    try:
        os.rename(write_audio(tmp_path / "in.wav", speechlike(1.0), 16000), source)
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    result = CliRunner().invoke(app, ["eval", str(source), "--model", str(tiny_model_dir), "--bitrates", "6",
                                      "--baselines", "none", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert b"caf\xe9.wav" in (tmp_path / "r" / "results.csv").read_bytes()


def test_rate_distortion_error_bars_stop_at_the_metrics_range(tmp_path, monkeypatch):
    import matplotlib.axes

    from codec.evaluation.evaluate import Summary
    from codec.evaluation.report import plot_rate_distortion

    drawn = {}
    real = matplotlib.axes.Axes.errorbar

    def spy(self, x, y, yerr=None, **kwargs):
        drawn[self.get_ylabel() or len(drawn)] = (np.asarray(y), np.asarray(yerr))
        return real(self, x, y, yerr=yerr, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", spy)
    summaries = [Summary("m", "s", kbps, 2, kbps, 0.1, 0.01, 0.01, {"pesq_wb": pesq, "stoi": stoi},
                         {"pesq_wb": 3.0, "stoi": 0.6}, {}) for kbps, pesq, stoi in [(3, 2.0, 0.8), (6, 4.0, 0.95)]]
    plot_rate_distortion(tmp_path / "rd.png", summaries)   # 2 files: intervals wider than the metrics' ranges
    (pesq_y, pesq_err), (stoi_y, stoi_err) = drawn.values()
    assert (pesq_y - pesq_err[0]).min() >= 1.04 - 1e-9 and (pesq_y + pesq_err[1]).max() <= 4.64 + 1e-9
    assert (stoi_y - stoi_err[0]).min() >= -1e-9 and (stoi_y + stoi_err[1]).max() <= 1 + 1e-9
    assert (tmp_path / "rd.png").stat().st_size > 0


def test_eval_stopped_while_writing_leaves_no_half_set_of_results(tiny_model_dir, tmp_path, monkeypatch):
    import codec.evaluation.report

    def interrupted(*args):
        raise KeyboardInterrupt

    source = write_audio(tmp_path / "in.wav", speechlike(1.0), 16000)
    out = tmp_path / "report"
    monkeypatch.setattr(codec.evaluation.report, "plot_rate_distortion", interrupted)
    result = CliRunner().invoke(app, ["eval", str(source), "--model", str(tiny_model_dir), "--bitrates", "6",
                                      "--out", str(out)])
    assert result.exit_code == 130 and list(out.iterdir()) == []   # results.json was written before the plots
    monkeypatch.undo()
    result = CliRunner().invoke(app, ["eval", str(source), "--model", str(tiny_model_dir), "--bitrates", "6",
                                      "--out", str(out)])
    assert result.exit_code == 0 and "holds results already" not in result.output   # a rerun needs no --force


def test_eval_scores_each_file_once_from_globs_and_several_inputs(tiny_model_dir, tmp_path, monkeypatch):
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("a.wav", "b.wav"):
        write_audio(folder / name, speechlike(1.0), 16000)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["eval", "clips/*.wav", "clips/a.wav", "./clips/a.wav", "--model",
                                      str(tiny_model_dir), "--bitrates", "6", "--out", str(out), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text())
    assert saved["settings"]["files"] == 2 and saved["settings"]["files_left_out"] == 0
    assert saved["settings"]["inputs"] == ["clips/*.wav", "clips/a.wav", "./clips/a.wav"]
    assert saved["settings"]["jobs"] == 1
    assert "2 input(s) named a file already listed: each file was scored once" in result.output
    missing = CliRunner().invoke(app, ["eval", "clips/*.flac", "--model", str(tiny_model_dir), "--out", "x"])
    assert missing.exit_code == 1 and "the pattern matches no files" in missing.output
    (folder / "loop.wav").symlink_to("loop.wav")   # a loop of links: left out by name, not an internal error
    looped = CliRunner().invoke(app, ["eval", "clips/*.wav", "--model", str(tiny_model_dir), "--bitrates", "6",
                                      "--out", str(tmp_path / "looped")])
    assert looped.exit_code == 1 and "left out clips/loop.wav: is a symbolic link to a missing file" in \
        " ".join(looped.output.split()), looped.output


_ENCODERS = ("case \"$*\" in *-encoders*) printf ' A....D libopus  Opus\\n ------\\n A....D libopus  Opus\\n'; "
             "exit 0;; esac\n")


def _fake_ffmpeg(tmp_path, monkeypatch, ffmpeg: str, ffprobe: str = "exit 1", encoders: str = _ENCODERS) -> None:
    """``ffmpeg`` and ``ffprobe`` on the PATH that run these shell lines (``ffmpeg -encoders`` lists
    libopus unless ``encoders`` says otherwise)."""
    import codec.evaluation.systems as systems

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ffmpeg").write_text(f"#!/bin/sh\n{encoders}{ffmpeg}\n")
    (bin_dir / "ffprobe").write_text(f"#!/bin/sh\n{ffprobe}\n")
    for program in bin_dir.iterdir():
        program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    listing = systems._ffmpeg_encoders   # not the cached one
    monkeypatch.setattr(systems, "_ffmpeg_encoders", getattr(listing, "__wrapped__", listing))


def test_a_baseline_program_that_fails_leaves_the_file_out_of_its_row(tiny_model_dir, tmp_path, monkeypatch):
    """An ffmpeg without the encoder skips the baseline; one that fails on a file leaves that file
    out of the baseline's row (the run goes on); the undefined note counts scores, not files."""
    _fake_ffmpeg(tmp_path, monkeypatch, "echo \"Unknown encoder 'libopus'\" >&2; exit 1")
    source = write_audio(tmp_path / "in.wav", speechlike(1.0), 16000)
    silent = write_audio(tmp_path / "silent.wav", np.zeros(16000), 16000)
    result = CliRunner().invoke(app, ["eval", str(source), str(silent), "--model", str(tiny_model_dir), "--bitrates",
                                      "6", "--baselines", "opus,speex,opus", "--out", str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    assert "speex skipped: this ffmpeg has no libspeex encoder" in result.output
    assert ("opus 6 kbps: its program failed on 2 file(s), left out of the row; first: "
            f"{source}: ffmpeg failed: Unknown encoder 'libopus'") in " ".join(result.output.split())
    assert [(s["system"], s["files"]) for s in json.loads(result.stdout)] == [("tiny-16k", 2)]
    output = " ".join(result.output.split())
    assert "PESQ-WB undefined in 1 of 2 scores (files x rows): 1 x PESQ found no utterances" in output
    assert ("STOI, SI-SDR and mel distance undefined in 1 of 2 scores (files x rows): 1 x an all-zero reference"
            in output)
    saved = json.loads((tmp_path / "r" / "results.json").read_text())
    assert saved["settings"]["baselines"] == ["opus", "speex"]


def test_eval_interrupted_says_how_far_it_got_and_leaves_no_folder(tiny_model_dir, tmp_path, monkeypatch):
    import codec.evaluation.evaluate as evaluate

    real, calls = evaluate.evaluate_file, []

    def stopped_at_the_second(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(evaluate, "evaluate_file", stopped_at_the_second)
    files = [write_audio(tmp_path / f"{name}.wav", speechlike(1.0), 16000) for name in "abc"]
    out = tmp_path / "new" / "report"
    result = CliRunner().invoke(app, ["eval", *map(str, files), "--model", str(tiny_model_dir), "--bitrates", "6",
                                      "--out", str(out)])
    assert result.exit_code == 130
    assert "interrupted after 1 of 3 files; no results were written" in result.output
    assert not (tmp_path / "new").exists()   # the folders it had made are gone again



def test_eval_terminated_keeps_the_signals_exit_code(tiny_model_dir, tmp_path, monkeypatch):
    import signal

    from codec.signals import Terminated

    real, calls = evaluate.evaluate_file, []

    def terminated_at_the_second(*args):
        calls.append(args)
        if len(calls) == 2:
            raise Terminated(signal.SIGTERM)   # (a KeyboardInterrupt too: it was taken for Ctrl-C, exit 130)
        return real(*args)

    monkeypatch.setattr(evaluate, "evaluate_file", terminated_at_the_second)
    files = [write_audio(tmp_path / f"{name}.wav", speechlike(1.0), 16000) for name in "abc"]
    result = CliRunner().invoke(app, ["eval", *map(str, files), "--model", str(tiny_model_dir), "--bitrates", "6",
                                      "--out", str(tmp_path / "report")])
    assert result.exit_code == 128 + signal.SIGTERM and "interrupted after" not in result.output
    assert not (tmp_path / "report").exists()


def test_the_spectrograms_are_of_the_first_file_that_could_be_scored(tiny_model_dir, tmp_path):
    write_audio(tmp_path / "a_silent.wav", np.zeros(16000), 16000)
    write_audio(tmp_path / "b_speech.wav", speechlike(1.0), 16000)
    _, _, example = run_evaluation(find_inputs(tmp_path), EvalSettings(str(tiny_model_dir), [6.0]))
    assert example[0].name == "b_speech.wav"


def test_a_failed_eval_never_removes_a_folder_that_was_there(tiny_model_dir, tmp_path, monkeypatch):
    """Folders --out made are removed again when no file could be evaluated; one that existed,
    however the path reaches it (new/../keep), stays."""
    (tmp_path / "keep").mkdir()
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    monkeypatch.chdir(tmp_path)
    for out in ("new/../keep", "new2/../keep/sub", "keep"):
        result = CliRunner().invoke(app, ["eval", "bad.wav", "--model", str(tiny_model_dir), "--bitrates", "6",
                                          "--out", out])
        assert result.exit_code == 1 and "no file could be evaluated" in result.output, out
        assert (tmp_path / "keep").is_dir(), out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.wav", "keep"]
    assert list((tmp_path / "keep").iterdir()) == []


def test_a_baseline_that_writes_no_audio_or_cannot_list_its_encoders_is_named(tiny_model_dir, tmp_path, monkeypatch):
    """An ffmpeg that exits 0 but writes no audio fails the file's row, not the run; one whose
    encoder list fails is named as failing, not as lacking the encoder."""
    garbage = 'for last; do :; done; echo garbage > "$last"; exit 0'
    _fake_ffmpeg(tmp_path, monkeypatch, garbage, ffprobe='echo \'{"packets": [{"size": 10}]}\'')
    source = write_audio(tmp_path / "in.wav", speechlike(1.0), 16000)
    result = CliRunner().invoke(app, ["eval", str(source), "--model", str(tiny_model_dir), "--bitrates", "6",
                                      "--baselines", "opus", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "opus 6 kbps: its program failed on 1 file(s)" in result.output
    assert "ffmpeg wrote no readable audio" in " ".join(result.output.split())
    shutil.rmtree(tmp_path / "bin")
    _fake_ffmpeg(tmp_path, monkeypatch, "exit 0", encoders='case "$*" in *-encoders*) echo broken >&2; exit 1;; esac\n')
    result = CliRunner().invoke(app, ["eval", str(source), "--model", str(tiny_model_dir), "--bitrates", "6",
                                      "--baselines", "opus", "--out", str(tmp_path / "r2")])
    assert result.exit_code == 0 and "opus skipped: 'ffmpeg -encoders' failed (ffmpeg failed: broken)" in result.output


def test_a_dc_offset_is_not_scored(tiny_model_dir, tmp_path):
    """The codecs drop a constant offset (it is not sound); scored with it, the same decoded
    speech lost 0.7 PESQ-WB and 0.13 STOI."""
    folder = tmp_path / "in"
    folder.mkdir()
    # one draw of the noise for both, stored as floats (16-bit samples would round the two apart)
    speech = 0.3 * speechlike(2.0)
    write_audio(folder / "plain.wav", speech, 16000, subtype="FLOAT")
    write_audio(folder / "offset.wav", speech + 0.5, 16000, subtype="FLOAT")
    write_audio(folder / "only.wav", np.full(2 * 44100, 0.3), 44100)   # removed before resampling: no edges left
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["eval", str(folder), "--model", str(tiny_model_dir), "--bitrates", "6",
                                      "--baselines", "none", "--out", str(out)])
    assert result.exit_code == 0, result.output
    scores = {Path(f["path"]).name: f["scores"] for f in json.loads((out / "results.json").read_text())["files"]}
    for metric in ("pesq_wb", "stoi"):
        assert scores["offset.wav"][metric] == pytest.approx(scores["plain.wav"][metric], abs=0.02), metric
    assert set(scores["only.wav"].values()) == {None}
    assert "1 x an all-zero reference (the input is a constant, its DC offset, which scoring removes)" in \
        " ".join(result.output.split())


def test_the_summary_fits_a_narrow_terminal_with_every_number_whole():
    import os

    from rich.console import Console

    from codec.evaluation.evaluate import Summary
    from codec.evaluation.report import summary_table

    rows = [Summary("esc-16k-small", "12 codebooks", 6, 40, 6.38, 0.38, 0.0557, 0.03, {"pesq_wb": 2.85, "stoi": 0.923},
                    {"pesq_wb": 0.10, "stoi": 0.008}, {})]
    for width, whole, narrow in ((80, ["2.85 ± 0.10", "6.38"], True),
                                 (200, ["2.85 ± 0.10", "0.923 ± 0.008", "0.0557", "40"], False)):
        console = Console(width=width, record=True, file=open(os.devnull, "w"))
        console.print(summary_table(rows, 1, 1, width))
        text = console.export_text()
        assert max(len(line) for line in text.splitlines()) <= width and "…" not in text
        assert all(cell in text for cell in whole), text
        assert ("real-time factors and file counts are in results.json" in " ".join(text.split())) == narrow


class _PoolWhoseWorkersDie:
    """Stands in for ProcessPoolExecutor: a worker dies on a file named in ``kills``, and on the
    third file of the first pool if ``once`` (a death the file did not cause)."""
    kills: tuple[str, ...] = ()
    once = False

    def __init__(self, workers, **_):
        self.dies_at_third = type(self).once
        type(self).once = False

    def map(self, function, jobs):
        for index, job in enumerate(jobs):
            if job[0].name in self.kills or (self.dies_at_third and index == 2):
                raise BrokenProcessPool("A process in the process pool was terminated abruptly")
            yield f"scored {job[0]}"

    def shutdown(self, cancel_futures=False):
        pass


@pytest.mark.parametrize("kills, once", [((), True), (("f2.wav",), False)])
def test_a_worker_that_dies_costs_no_other_file(monkeypatch, kills, once):
    monkeypatch.setattr(evaluate, "ProcessPoolExecutor", type("Pool", (_PoolWhoseWorkersDie,), {
        "kills": kills, "once": once}))
    jobs = [(Path(f"f{index}.wav"), None, False) for index in range(5)]
    notes, failures = [], []
    scored = list(evaluate._in_workers(jobs, EvalSettings(None, [6.0], jobs=2), notes, failures))
    assert len(notes) == 1 and notes[0].startswith("a worker process died") and "given to new workers" in notes[0]
    if once:   # the third file, scored alone, came back; the rest in a new pool: each once, in order
        assert scored == [(job, f"scored {job[0]}") for job in jobs] and not failures
    else:      # the file that kills every worker is left out, named, and only it
        assert [job for job, _ in scored] == jobs[:2] + jobs[3:]
        assert failures == ["f2.wav: its worker process died while scoring it, alone too (out of memory? killed?)"]


def test_evaluating_no_files_in_workers_is_an_error_naming_it():
    with pytest.raises(CodecError, match="no file could be evaluated"):
        run_evaluation([], EvalSettings(None, [6.0], jobs=2))


def test_worker_processes_score_as_one_process_does(tiny_model_dir, tmp_path):
    (tmp_path / "clips").mkdir()
    for name in ("a.wav", "b.wav", "c.wav"):
        write_audio(tmp_path / "clips" / name, speechlike(1.0), 16000)
    scores = {}
    for jobs in (1, 2):
        results, _, _ = run_evaluation(sorted((tmp_path / "clips").iterdir()),
                                       EvalSettings(str(tiny_model_dir), [6.0], jobs=jobs))
        scores[jobs] = [(Path(r.path).name, r.scores["pesq_wb"], r.scores["stoi"]) for r in results]
    assert scores[2] == scores[1] and [name for name, _, _ in scores[1]] == ["a.wav", "b.wav", "c.wav"]
    one = CliRunner().invoke(app, ["eval", str(tmp_path / "clips" / "a.wav"), "--model", str(tiny_model_dir),
                                   "--bitrates", "6", "--jobs", "2", "--out", str(tmp_path / "one")])
    assert one.exit_code == 0 and "workers at once" not in one.output   # one file: one worker ran


def test_a_file_with_no_samples_has_no_bitrate_or_speed_and_leaves_the_summary_alone(tiny_model_dir, tmp_path):
    """Its .codes file has header bytes but no duration: its rates are undefined (empty in results.csv,
    null in results.json), not 0, and the summary's rates are those of the other files."""
    folder = tmp_path / "in"
    folder.mkdir()
    write_audio(folder / "speech.wav", speechlike(1.0), 16000)
    write_audio(folder / "zero.wav", np.zeros(0), 16000)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["eval", str(folder), "--model", str(tiny_model_dir), "--bitrates", "6",
                                      "--baselines", "none", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).name: r for r in json.loads((out / "results.json").read_text())["files"]}
    assert [rows["zero.wav"][k] for k in ("measured_kbps", "encode_rtf", "decode_rtf")] == [None, None, None]
    assert rows["speech.wav"]["measured_kbps"] > 0
    assert json.loads(result.stdout)[0]["measured_kbps"] == pytest.approx(rows["speech.wav"]["measured_kbps"])
    lines = (out / "results.csv").read_text().splitlines()
    zero = next(line for line in lines if "zero.wav" in line).split(",")
    assert zero[4:6] == ["", ""] and zero[9:11] == ["", ""]
