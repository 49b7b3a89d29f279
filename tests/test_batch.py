"""Batch coding (folders, globs, lists of files), stdin/stdout, and decoding to another rate or
channel count, through the CLI as a user runs it."""

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec.batch import find_files, is_batch, plan_jobs
from codec.coding import convert_blocks
from codec.errors import CodecError
from tests.conftest import REPO, tone, write_audio
from tests.conftest import run_cli as invoke


@pytest.fixture
def tree(tmp_path):
    """in/top.wav (8 kHz), in/a/x.flac (44.1 kHz stereo), in/a/b/y.wav (16 kHz): a nested folder."""
    root = tmp_path / "in"
    (root / "a" / "b").mkdir(parents=True)
    write_audio(root / "top.wav", tone(0.4, 8000), 8000)
    write_audio(root / "a" / "x.flac", tone(0.3, 44100, channels=2), 44100)
    write_audio(root / "a" / "b" / "y.wav", tone(0.5, 16000, freq=200), 16000)
    (root / "a" / "notes.txt").write_text("not audio: left out")
    return root


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_folder_encode_decode_mirrors_the_tree(tiny_model_dir, tree, tmp_path):
    codes, wavs = tmp_path / "codes", tmp_path / "wavs"
    result = invoke("encode", tree, codes, "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert _files(codes) == ["a/b/y.codes", "a/x.codes", "top.codes"]
    assert "encoded 3 files, failed 0" in result.output and "kbps mean" in result.output
    assert "note: skipped 1 file that is not audio (.txt)" in result.output   # (not silently)
    (codes / "a" / "x.wav").write_bytes(b"")   # audio beside codes is expected (decoding in place): no note
    result = invoke("decode", codes, wavs, "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert "note: skipped" not in result.output
    assert _files(wavs) == ["a/b/y.wav", "a/x.wav", "top.wav"]
    for name, source in [("a/x.wav", "a/x.flac"), ("top.wav", "top.wav")]:
        out, original = sf.info(str(wavs / name)), sf.info(str(tree / source))
        assert (out.samplerate, out.channels, out.frames) == (original.samplerate, original.channels,
                                                              original.frames)
    result = invoke("decode", codes, tmp_path / "flacs", "--format", "flac")  # model named in the files
    assert result.exit_code == 1 and "not found" in result.output  # tiny-16k is no shipped model: per file
    assert "--model" in result.output
    assert result.output.count("failed: ") == 3


def test_batch_decode_writes_each_format_that_format_names(tiny_model_dir, tree, tmp_path):
    codes = tmp_path / "codes"
    assert invoke("encode", tree / "a" / "b", codes, "--model", tiny_model_dir).exit_code == 0
    for name, suffix, major in [("ogg", ".ogg", "OGG"), ("AIFF", ".aiff", "AIFF")]:
        result = invoke("decode", codes, tmp_path / name, "--format", name, "--model", tiny_model_dir)
        assert result.exit_code == 0, result.output
        decoded = sf.info(str(tmp_path / name / f"y{suffix}"))
        assert decoded.format == major and decoded.frames == sf.info(str(tree / "a" / "b" / "y.wav")).frames
    result = invoke("decode", codes, tmp_path / "float", "--sample-format", "float", "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert sf.info(str(tmp_path / "float" / "y.wav")).subtype == "FLOAT"


def test_batch_decode_recognises_saved_packet_streams_by_their_content(tiny_model_dir, tree, tmp_path):
    codes, wavs = tmp_path / "codes", tmp_path / "wavs"
    assert invoke("encode", tree / "a" / "b", codes, "--model", tiny_model_dir).exit_code == 0
    assert invoke("stream", "--input", tree / "top.wav", "--save", codes / "live.pkt", "--no-play", "--fast",
                  "--model", tiny_model_dir).exit_code == 0
    (codes / "notes.txt").write_text("neither: left out")
    result = invoke("decode", codes, wavs, "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert _files(wavs) == ["live.wav", "y.wav"]
    assert sf.info(str(wavs / "live.wav")).frames == sf.info(str(tree / "top.wav")).frames
    result = invoke("decode", str(codes / "*.pkt"), tmp_path / "streams", "--model", tiny_model_dir,
                    "--sample-format", "pcm24")
    assert result.exit_code == 0 and _files(tmp_path / "streams") == ["live.wav"], result.output
    assert sf.info(str(tmp_path / "streams" / "live.wav")).subtype == "PCM_24"
    result = invoke("decode", str(tree / "*.txt"), tmp_path / "none", "--model", tiny_model_dir)
    assert result.exit_code == 1 and "(or packet streams saved by codec stream --save)" in result.output


def test_a_bad_file_is_reported_and_the_rest_are_coded(tiny_model_dir, tree, tmp_path):
    (tree / "a" / "broken.wav").write_bytes(b"RIFF\x00\x00 not really a wav file")
    codes = tmp_path / "codes"
    result = invoke("encode", tree, codes, "--model", tiny_model_dir)
    assert result.exit_code == 1
    failures = [line for line in result.output.splitlines() if line.startswith("failed: ")]
    assert len(failures) == 1 and "broken.wav: cannot read audio" in failures[0]
    assert "encoded 3 files, failed 1" in result.output
    assert _files(codes) == ["a/b/y.codes", "a/x.codes", "top.codes"]
    # a folder whose files all failed leaves no empty output folder behind; one that held files is kept
    (tree / "c" / "d").mkdir(parents=True)
    (tree / "c" / "d" / "bad.wav").write_bytes(b"RIFF\x00\x00 not really a wav file")
    (codes / "kept").mkdir()
    result = invoke("encode", tree, codes, "--model", tiny_model_dir)
    assert result.exit_code == 1 and "encoded 0 files, 3 already done" in result.output, result.output
    assert not (codes / "c").exists() and (codes / "kept").is_dir()


def test_a_dangling_link_fails_and_a_file_where_a_folder_goes_is_named(tiny_model_dir, tree, tmp_path):
    (tree / "gone.wav").symlink_to(tmp_path / "no-such.wav")   # listed, to fail with its reason, not skipped
    os.mkfifo(tree / "pipe.wav")   # as is a pipe
    codes = tmp_path / "codes"
    codes.mkdir()
    (codes / "a").write_text("a file where the output tree needs the folder a/")
    result = invoke("encode", tree, codes, "--model", tiny_model_dir)
    failures = sorted(line for line in result.output.splitlines() if line.startswith("failed: "))
    assert result.exit_code == 1 and len(failures) == 4, result.output
    assert "gone.wav: is a symbolic link to a missing file" in failures[2]
    assert "pipe.wav: is a pipe or device, not a file" in failures[3]
    assert all(f"{codes / 'a'}: is a file, where the output needs a folder of that name" in line
               for line in failures[:2])
    assert "encoded 1 file, failed 4" in result.output and (codes / "a").read_text().startswith("a file")


def test_rerun_skips_done_files_and_force_redoes_them(tiny_model_dir, tree, tmp_path):
    codes = tmp_path / "codes"
    assert invoke("encode", tree, codes, "--model", tiny_model_dir).exit_code == 0
    (codes / "top.codes").write_bytes(b"user data")
    result = invoke("encode", tree, codes, "--model", tiny_model_dir)
    assert result.exit_code == 0
    assert "encoded 0 files, 3 already done (output exists; --force redoes them), failed 0" in result.output
    assert (codes / "top.codes").read_bytes() == b"user data"
    result = invoke("encode", tree, codes, "--model", tiny_model_dir, "--force")
    assert result.exit_code == 0 and "encoded 3 files, failed 0" in result.output
    assert (codes / "top.codes").read_bytes().startswith(b"CODC")


def test_quoted_glob_with_two_jobs(tiny_model_dir, tree, tmp_path):
    codes = tmp_path / "codes"
    result = invoke("encode", f"{tree}/**/*.wav", codes, "--model", tiny_model_dir, "--jobs", "2")
    assert result.exit_code == 0, result.output
    assert _files(codes) == ["a/b/y.codes", "top.codes"]
    assert "note: skipped" not in result.output   # what the pattern does not match is not noted
    result = invoke("encode", f"{tree}/a/*", tmp_path / "codes2", "--model", tiny_model_dir)
    assert "note: skipped 1 file that is not audio (.txt)" in result.output   # what it matches is
    result = invoke("decode", f"{codes}/**/*.codes", tmp_path / "out", "--jobs", "2", "--model", tiny_model_dir,
                    "--format", "flac", "--sample-rate", "22050")
    assert result.exit_code == 0, result.output
    assert _files(tmp_path / "out") == ["a/b/y.flac", "top.flac"]
    assert sf.info(str(tmp_path / "out" / "top.flac")).samplerate == 22050


@pytest.mark.parametrize("given,used", [(None, 1), (2, 2)])
def test_a_batch_codes_on_the_threads_asked_for(tiny_model_dir, tree, tmp_path, monkeypatch, given, used):
    """One torch thread per job unless --threads says otherwise."""
    import torch

    import codec.batch
    from codec.threads import usable_cores

    if usable_cores() < used:
        pytest.skip(f"--threads {used} needs {used} CPU cores; this machine lets the tests use {usable_cores()}")

    seen, code_file = [], codec.batch.code_file

    def counting(job, settings):
        seen.append(torch.get_num_threads())
        return code_file(job, settings)

    monkeypatch.setattr(codec.batch, "code_file", counting)
    before = torch.get_num_threads()
    extra = [] if given is None else ["--threads", str(given)]
    try:
        result = invoke("encode", tree, tmp_path / "codes", "--model", tiny_model_dir, *extra)
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    assert seen == [used] * 3


def test_jobs_times_threads_beyond_the_cores_is_warned_of(tiny_model_dir, tree, tmp_path, monkeypatch):
    import torch

    import codec.threads

    monkeypatch.setattr(codec.threads, "usable_cores", lambda: 2)
    before = torch.get_num_threads()
    try:
        result = invoke("encode", tree, tmp_path / "codes", "--model", tiny_model_dir, "--jobs", "2",
                        "--threads", "2")
        assert result.exit_code == 0, result.output
        assert "warning: --jobs 2 with --threads 2 runs 4 threads on 2 CPU cores; they compete for them: " \
               "--threads 1 is likely faster" in " ".join(result.output.split())
        result = invoke("encode", tree, tmp_path / "codes2", "--model", tiny_model_dir, "--jobs", "2",
                        "--threads", "1")
        assert result.exit_code == 0 and "warning" not in result.output, result.output
        result = invoke("encode", tree, tmp_path / "codes3", "--model", tiny_model_dir, "--jobs", "3",
                        "--threads", "1")
        assert result.exit_code == 0 and "warning: --jobs 3 runs 3 processes on 2 CPU cores; they compete for " \
            "them: --jobs 2 is likely faster" in " ".join(result.output.split()), result.output
        (tmp_path / "codes" / "top.codes").unlink()   # one file left to code: one job, no competition
        result = invoke("encode", tree, tmp_path / "codes", "--model", tiny_model_dir, "--jobs", "2",
                        "--threads", "2")
        assert result.exit_code == 0 and "warning" not in result.output and "2 already done" in result.output
    finally:
        torch.set_num_threads(before)


def test_one_file_codes_on_the_threads_asked_for(tiny_model_dir, tree, tmp_path, monkeypatch):
    import torch

    import codec.coding

    seen, encode_file = [], codec.coding.encode_file

    def counting(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return encode_file(*args, **kwargs)

    monkeypatch.setattr(codec.coding, "encode_file", counting)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        result = invoke("encode", tree / "top.wav", tmp_path / "top.codes", "--model", tiny_model_dir,
                        "--threads", "1")
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    assert seen == [1]


def test_files_the_shell_expanded_keep_their_tree_below_their_common_folder(tiny_model_dir, tree, tmp_path):
    codes = tmp_path / "codes"
    result = invoke("encode", tree / "a" / "x.flac", tree / "a" / "b" / "y.wav", codes, "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert _files(codes) == ["b/y.codes", "x.codes"]



def test_a_file_named_twice_in_two_spellings_is_coded_once(tree):
    # (a.wav and b/../a.wav took one output each: the second failed as a clash, "rename one of them")
    found = find_files([str(tree / "a" / "x.flac"), str(tree / "a" / "b" / ".." / "x.flac"),
                        str(tree / "top.wav")], (".wav", ".flac"))
    assert [(file.name, str(place)) for file, place in found] == [("x.flac", "a/x.flac"), ("top.wav", "top.wav")]


def test_several_folders_and_files_each_go_below_their_own_name(tiny_model_dir, tree, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    write_audio(other / "z.wav", tone(0.3, 16000), 16000)
    loose = tmp_path / "loose.wav"
    write_audio(loose, tone(0.3, 16000), 16000)
    codes = tmp_path / "codes"
    result = invoke("encode", tree / "a", other, loose, codes, "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert _files(codes) == ["a/b/y.codes", "a/x.codes", "loose.codes", "other/z.codes"]
    result = invoke("encode", str(tree / "a" / "*.flac"), str(other / "*.wav"), tmp_path / "globs",
                    "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert _files(tmp_path / "globs") == ["x.codes", "z.codes"]
    (tmp_path / "empty").mkdir()
    result = invoke("encode", other, tmp_path / "empty", tmp_path / "none", "--model", tiny_model_dir)
    assert result.exit_code == 1 and "empty: no files ending in" in result.output
    assert not (tmp_path / "none").exists()


def test_which_arguments_make_a_batch(tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_batch([str(tree)]) and is_batch(["in/**/*.wav"]) and is_batch(["a.wav", "b.wav"])
    assert not is_batch([str(tree / "top.wav")]) and not is_batch(["-"]) and not is_batch(["take[1].wav"])
    placed = find_files(["in/**/*.wav"], (".wav",))
    assert [(f.name, str(place)) for f, place in placed] == [("y.wav", "a/b/y.wav"), ("top.wav", "top.wav")]
    jobs, clashes = plan_jobs([(tree / "top.wav", Path("top.wav")), (tree / "top.flac", Path("top.flac"))],
                              tmp_path / "out", ".codes")
    assert len(jobs) == 1 and len(clashes) == 1 and "also the output of" in clashes[0].reason
    # a lossy and a lossless file with one output: the lossless one is coded, whichever sorts first
    jobs, clashes = plan_jobs([(tree / "talk.mp3", Path("talk.mp3")), (tree / "talk.wav", Path("talk.wav"))],
                              tmp_path / "out", ".codes")
    assert [j.source.name for j in jobs] == ["talk.wav"] and [c.job.source.name for c in clashes] == ["talk.mp3"]
    assert f"is also the output of {tree / 'talk.wav'}, which goes first (lossless files before lossy ones); " \
        "rename one of them" in clashes[0].reason
    # a .codes file and a saved stream (any name) with one output: the .codes file, whichever sorts first
    jobs, clashes = plan_jobs([(tree / "x", Path("x")), (tree / "x.codes", Path("x.codes"))], tmp_path / "out", ".wav")
    assert [j.source.name for j in jobs] == ["x.codes"]
    assert "which goes first (.codes files before saved streams)" in clashes[0].reason
    jobs, clashes = plan_jobs([(tree / "t.aif", Path("t.aif")), (tree / "t.caf", Path("t.caf"))], tmp_path / "out",
                              ".codes")   # two lossless files: the first found
    assert [j.source.name for j in jobs] == ["t.aif"] and "which goes first (it was found first)" in clashes[0].reason
    # decoding a folder into itself: x.codes -> x.wav would replace the input x.wav (a saved packet stream)
    jobs, clashes = plan_jobs([(tree / "x.codes", Path("x.codes")), (tree / "x.wav", Path("x.wav"))], tree, ".wav")
    assert jobs == [] and [c.job.source.name for c in clashes] == ["x.codes", "x.wav"]
    assert all(f"would replace the input {tree / 'x.wav'}" in c.reason for c in clashes)
    # into the same folder by another route (a bind mount of it; a hard link stands in here)
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "x.wav").write_bytes(b"RIFF a packet stream")
    (tmp_path / "mirror").mkdir()
    os.link(tmp_path / "sd" / "x.wav", tmp_path / "mirror" / "x.wav")
    jobs, clashes = plan_jobs([(tmp_path / "sd" / "x.wav", Path("x.wav"))], tmp_path / "mirror", ".wav")
    assert jobs == [] and f"would replace the input {tmp_path / 'sd' / 'x.wav'}" in clashes[0].reason
    with pytest.raises(CodecError, match="matches no files"):
        find_files(["in/**/*.mp3"], (".mp3",))


def test_a_missing_argument_gets_the_usage_and_exit_code_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("encode", "only-one-argument")
    assert result.exit_code == 2 and "missing OUTPUT" in result.output and "Usage" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_the_usage_line_shows_input_and_output_as_required(command):
    # (click takes them as optional, so that the command can name what is missing)
    for result in (invoke(command, "--help"), invoke(command)):
        assert f" {command} [OPTIONS] INPUT... OUTPUT" in " ".join(result.output.split())   # (the runner calls it root)


def test_a_batch_of_only_formats_not_read_says_how_to_convert_them(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "take.m4a").write_bytes(b"x")
    result = invoke("encode", tmp_path / "in", tmp_path / "out")
    assert result.exit_code == 1 and "no files ending in .wav" in result.output
    assert "skipped 1 audio file in a format not read (.m4a: convert it first" in " ".join(result.output.split())


@pytest.mark.parametrize("args,message", [
    (["encode", "{tree}", "out.codes"], "is a directory; to encode the files in it, give an output folder"),
    (["decode", "{tree}", "out.wav"], "is a directory; to decode the files in it, give an output folder"),
    (["encode", "{tree}/*.wav", "out.codes"], "a glob pattern needs an output folder, not a file name"),
    (["encode", "{tree}/*.wav", "{tree}/top.wav", "out.codes"], "several inputs need an output folder"),
    (["encode", "{tree}/top.w*", "-"], "a folder or glob pattern cannot go to - (stdout)"),
    (["encode", "missing", "out/"], "missing: no such file"),   # (not the output's trailing / blamed)
    (["encode", "{tree}", "-"], "cannot go to - (stdout)"),
    (["encode", "{tree}", "out", "--jobs", "0"], "--jobs 0"),
    (["encode", "{tree}", "out", "--threads", "0"], "--threads 0: must be 1 to "),
    (["decode", "x.codes", "y.wav", "--threads", "100000"], "--threads 100000: must be 1 to "),
    (["encode", "{tree}/*.ogg", "out"], "matches no files"),
    (["decode", "x.codes", "y.wav", "--format", "mp3"], "--format mp3 is not supported; choose wav, flac, ogg, aiff"),
    (["decode", "x.codes", "y.wav", "--sample-format", "s16"],
     "--sample-format s16 is not supported; choose pcm16, pcm24, float"),
    (["decode", "{tree}", "out", "--format", "flac", "--sample-format", "float"],
     "--format flac: FLAC holds integer samples only"),
    (["decode", "x.codes", "y.ogg", "--sample-format", "pcm16"], "y.ogg: OGG Vorbis is lossy"),
    (["decode", "x.codes", "y.wav", "--sample-rate", "0"], "sample rate 0 Hz is not supported"),
])
def test_batch_and_option_errors_are_one_line(tree, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = invoke(*[a.replace("{tree}", str(tree)) for a in args])
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


# --- stdin and stdout ----------------------------------------------------------------------
def _wav_bytes(audio, sample_rate):
    buffer = io.BytesIO()
    sf.write(buffer, audio, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_stdin_to_stdout_round_trip(tiny_model_dir, tmp_path):
    wav = _wav_bytes(tone(0.5, 24000, channels=2), 24000)
    encoded = invoke("encode", "-", "-", "--model", tiny_model_dir, input=wav)
    assert encoded.exit_code == 0, encoded.output
    assert encoded.stdout_bytes.startswith(b"CODC") and "stdout: 0.50 s, 2 ch" in encoded.stderr
    decoded = invoke("decode", "-", "-", "--model", tiny_model_dir, input=encoded.stdout_bytes)
    assert decoded.exit_code == 0, decoded.output
    audio, rate = sf.read(io.BytesIO(decoded.stdout_bytes))
    assert rate == 24000 and audio.shape == (12000, 2)
    result = invoke("decode", "-", tmp_path / "out.flac", "--model", tiny_model_dir, input=encoded.stdout_bytes)
    assert result.exit_code == 0 and sf.info(str(tmp_path / "out.flac")).frames == 12000


def test_stdin_errors_name_stdin(tiny_model_dir):
    result = invoke("encode", "-", "x.codes", "--model", tiny_model_dir, input=b"not audio")
    assert result.exit_code == 1 and result.output.startswith("error: stdin: cannot read audio")
    result = invoke("decode", "-", "-", input=b"")
    assert result.exit_code == 1 and "stdin is empty" in result.output and not result.stdout_bytes


def test_pipe_through_a_real_process(tiny_model_dir):
    """stdout carries the .codes bytes and nothing else; the message goes to stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    wav = _wav_bytes(tone(0.4, 16000), 16000)
    done = subprocess.run([sys.executable, "-m", "codec.cli.main", "encode", "-", "-", "--model", str(tiny_model_dir)],
                          input=wav, capture_output=True, cwd=REPO, env=env, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.startswith(b"CODC") and b"stdout: 0.40 s" in done.stderr
    decoded = invoke("decode", "-", "-", "--model", tiny_model_dir, input=done.stdout)
    assert decoded.exit_code == 0 and len(sf.read(io.BytesIO(decoded.stdout_bytes))[0]) == 6400


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux) to stand in for a full disk")
def test_a_full_disk_behind_stdout_is_named(tiny_model_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open("/dev/full", "wb") as full:
        done = subprocess.run([sys.executable, "-m", "codec.cli.main", "encode", "-", "-", "--model",
                               str(tiny_model_dir)], input=_wav_bytes(tone(0.2, 16000), 16000), stdout=full,
                              stderr=subprocess.PIPE, cwd=REPO, env=env, timeout=120)
    assert done.returncode == 1 and done.stderr.decode().strip() == "error: stdout: cannot write (No space left " \
                                                                      "on device)", done.stderr.decode()


# --- another rate or channel count on decode ------------------------------------------------
def test_decode_to_48k_stereo(tiny_model_dir, tmp_path):
    source = write_audio(tmp_path / "mono.wav", tone(0.5, 16000), 16000)
    codes, out = tmp_path / "mono.codes", tmp_path / "out.wav"
    assert invoke("encode", source, codes, "--model", tiny_model_dir).exit_code == 0
    result = invoke("decode", codes, out, "--model", tiny_model_dir, "--sample-rate", "48000", "--channels", "2")
    assert result.exit_code == 0, result.output
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.frames) == (48000, 2, 24000)
    audio = sf.read(str(out))[0]
    assert np.array_equal(audio[:, 0], audio[:, 1])
    result = invoke("decode", codes, tmp_path / "x.wav", "--model", tiny_model_dir, "--channels", "3")
    assert result.exit_code == 0 and sf.info(str(tmp_path / "x.wav")).channels == 3


def test_decode_refuses_a_channel_change_it_cannot_make(tiny_model_dir, tmp_path):
    source = write_audio(tmp_path / "stereo.wav", tone(0.3, 16000, channels=2), 16000)
    codes = tmp_path / "stereo.codes"
    assert invoke("encode", source, codes, "--model", tiny_model_dir).exit_code == 0
    result = invoke("decode", codes, tmp_path / "x.wav", "--model", tiny_model_dir, "--channels", "3")
    assert result.exit_code == 1 and f"{codes}: cannot turn 2 channels into 3" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "x.wav").exists()


def test_convert_blocks_is_exact_and_streams():
    audio = tone(1.0, 16000, channels=2)
    blocks = [audio[i:i + 3000] for i in range(0, len(audio), 3000)]
    out = np.concatenate(list(convert_blocks(blocks, 16000, len(audio), 44100, 1)))
    assert out.shape == (44100, 1)
    whole = np.concatenate(list(convert_blocks([audio], 16000, len(audio), 44100, 1)))
    np.testing.assert_allclose(out, whole, atol=1e-6)
    same = np.concatenate(list(convert_blocks(blocks, 16000, len(audio), None, None)))
    np.testing.assert_allclose(same, audio, atol=1e-6)


def test_convert_blocks_makes_a_large_conversion_a_share_at_a_time(monkeypatch):
    """One channel copied to many at a higher rate is converted in slices of a bounded size (a
    1 s block here, as 10 s to 1024 channels at 192 kHz would have been 15 GiB at once)."""
    import codec.coding

    audio = tone(1.0, 16000)
    whole = np.concatenate(list(convert_blocks([audio], 16000, len(audio), 48000, 8)))
    monkeypatch.setattr(codec.coding, "_LARGEST_CONVERSION", 8 * 3 * 1000)   # 1000 input samples a slice
    pieces = list(convert_blocks([audio], 16000, len(audio), 48000, 8))
    assert max(len(piece) for piece in pieces) <= 2 * 3000 and len(pieces) >= 16   # (soxr holds some back)
    np.testing.assert_allclose(np.concatenate(pieces), whole, atol=1e-6)
    assert whole.shape == (48000, 8)


def _group_signal_dispositions() -> tuple[bool, bool, bool]:
    import signal

    signals = (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
    return tuple(signal.getsignal(signum) is signal.SIG_IGN for signum in signals)


def test_workers_leave_group_signals_to_the_main_process():
    # Ctrl-C, Ctrl-\ and a closed terminal signal the whole group: spawned workers printed tracebacks
    import multiprocessing
    import signal
    from concurrent.futures import ProcessPoolExecutor

    from codec.signals import children_ignore_group_signals

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGHUP)
    with children_ignore_group_signals():
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        future = pool.submit(_group_signal_dispositions)
    with pool:
        assert future.result(timeout=120) == (True, True, True)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGHUP)) == before   # this process: as it was


def _dies_on_die(index, job, settings):
    """A worker's task that dies, as out of memory would: while writing a file named die*, or
    just after writing one named done*."""
    import codec.batch as batch
    from codec.atomic import create_partial

    if job.source.name.startswith("die") and batch._claim(batch._claims, index, batch.BY_WORKER):
        create_partial(job.target).write_bytes(b"half a file")
        os._exit(9)
    outcome = batch.code_claimed(index, job, settings)
    if job.source.name.startswith("done"):
        os._exit(9)
    return outcome


@pytest.mark.long
def test_a_worker_that_dies_fails_only_its_file(tiny_model_dir, tmp_path, monkeypatch, capfd):
    """The pool breaks when a worker dies: the other files are coded in a new pool and the one
    that killed its worker twice fails, without a traceback (Python 3.11 printed InvalidStateError)
    and without its temporary file; one written whole before its worker died is coded."""
    import codec.batch as batch

    sources = [write_audio(tmp_path / name, tone(0.3, 16000), 16000)
               for name in ("die.wav", "done.wav", "a.wav", "b.wav")]
    jobs = [batch.Job(source, tmp_path / "out" / source.with_suffix(".codes").name) for source in sources]
    claim = batch._claim   # this process codes none itself, so that the workers meet the file that kills them
    monkeypatch.setattr(batch, "_claim", lambda claims, index, who: who != batch.BY_MAIN and claim(claims, index, who))
    (tmp_path / "out").mkdir()
    outcomes = {o.job.source.name: o for o in batch._run(jobs, batch.BatchSettings("encode", str(tiny_model_dir)),
                                                         2, task=_dies_on_die)}
    assert outcomes["a.wav"].status == outcomes["b.wav"].status == outcomes["done.wav"].status == "coded"
    assert outcomes["done.wav"].seconds == pytest.approx(0.3) and outcomes["done.wav"].bytes > 0
    assert outcomes["die.wav"].status == "failed" and "the worker process coding it died, twice" \
        in outcomes["die.wav"].reason
    assert "Traceback" not in capfd.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.codes", "b.codes", "done.codes"]


def test_a_folder_where_an_output_goes_fails_instead_of_being_skipped(tiny_model_dir, tree, tmp_path):
    """Only an existing file is skipped; a folder or pipe in its place is no finished output."""
    out = tmp_path / "out"
    (out / "top.codes").mkdir(parents=True)
    (out / "a").mkdir()
    os.mkfifo(out / "a" / "x.codes")
    result = invoke("encode", tree, out, "--model", tiny_model_dir)
    assert result.exit_code == 1, result.output
    assert f"{out / 'top.codes'}: is a directory; give a file name" in result.output
    assert f"{out / 'a' / 'x.codes'}: is not a regular file" in result.output
    assert "encoded 1 file, failed 2" in result.output


def test_a_job_whose_worker_died_is_never_retried_in_the_main_process(tiny_model_dir, tmp_path, monkeypatch):
    """If the file killed its worker (out of memory), it would kill the main process too, and the
    whole batch with it: only a worker tries it again."""
    import codec.batch as batch

    sources = [write_audio(tmp_path / name, tone(0.3, 16000), 16000) for name in ("die.wav", "a.wav")]
    jobs = [batch.Job(source, tmp_path / source.with_suffix(".codes").name) for source in sources]
    coded_here, code_file = [], batch.code_file
    monkeypatch.setattr(batch, "code_file", lambda job, settings: coded_here.append(job) or code_file(job, settings))
    broke = {jobs[0]: 1}   # its worker died once already
    outcomes = list(batch._run_pool(jobs, batch.BatchSettings("encode", str(tiny_model_dir)), 2, _dies_on_die, broke))
    assert jobs[0] not in coded_here and [o.status for o in outcomes if o.job == jobs[0]] == ["failed"]


def _slow_batch(tiny_model_dir, tmp_path):
    """``codec encode`` of 4 files of ~20 s work each with ``--jobs 2``, once its worker has loaded
    the model and is coding its first file: ``(the process, its workers' process ids)``."""
    import time

    folder = tmp_path / "in"
    folder.mkdir()
    for name in "abcd":
        write_audio(folder / f"{name}.wav", tone(3.0, 16000), 16000)
    command = [sys.executable, "-c", "from codec.cli.main import run; run()", "encode", str(folder),
               str(tmp_path / "out"), "--jobs", "2", "--refine-steps", "300", "--model", str(tiny_model_dir)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (workers := subprocess.run(["pgrep", "-P", str(process.pid), "-f", "spawn_main"],
                                         capture_output=True, text=True).stdout.split()):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.2)
    time.sleep(4)
    return process, workers


def test_sigterm_stops_a_batch_with_workers_at_once(tiny_model_dir, tmp_path):
    """Stopped, a worker ends with its file instead of taking the next one queued for it (it did:
    a stop took as long as another whole file); nothing is left behind."""
    import signal
    import time

    process, _ = _slow_batch(tiny_model_dir, tmp_path)
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143 and "terminated by SIGTERM" in err
    # what a second run would do: the files coded are whole, and kept
    assert "after 0 of the 4 files to encode were encoded; the same command again encodes the rest (outputs that " \
        "exist are kept)" in " ".join(err.split())
    assert time.monotonic() - started < 8
    assert not [p for p in tmp_path.glob("out/**/*") if p.is_file()]


def test_workers_stop_when_the_main_process_is_killed(tiny_model_dir, tmp_path):
    """A batch's main process killed outright (SIGKILL, out of memory) left its workers waiting
    for jobs forever."""
    import time

    process, workers = _slow_batch(tiny_model_dir, tmp_path)
    process.kill()
    process.communicate()
    deadline = time.monotonic() + 20
    try:
        while any(os.path.exists(f"/proc/{pid}") and "Z" not in _process_state(pid) for pid in workers):
            assert time.monotonic() < deadline, f"workers {workers} outlived the main process"
            time.sleep(0.2)
    finally:   # (a failed test leaves none behind)
        for pid in workers:
            subprocess.run(["kill", "-9", pid], capture_output=True)


def _process_state(pid: str) -> str:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_terminal_escape_in_a_file_name_is_shown_not_obeyed(tiny_model_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "q\x1b[32mg.wav").write_bytes(b"junk")
    write_audio(folder / "fine\x1b[31m.wav", tone(0.2, 16000), 16000)
    result = invoke("encode", folder, tmp_path / "out", "--model", tiny_model_dir)
    assert result.exit_code == 1 and "\x1b" not in result.output
    assert "failed: " + str(folder / "q\\x1b[32mg.wav") in result.output


def test_decoding_in_place_never_replaces_the_recordings_beside_the_codes(tiny_model_dir, tree):
    """`codec encode rec/ rec/` puts talk.codes beside talk.wav; `codec decode rec/ rec/ --force`
    replaced the recording with its lossy decode. Skipped outputs are named."""
    recording = (tree / "top.wav").read_bytes()
    assert invoke("encode", tree, tree, "--model", tiny_model_dir).exit_code == 0
    (tree / "a" / "x.flac").unlink()   # its decode has its place free: x.codes -> x.wav is new
    for force in ([], ["--force"]):
        result = invoke("decode", tree, tree, "--model", tiny_model_dir, *force)
        assert result.exit_code == 1, result.output
        assert "top.wav is an audio file beside it, most likely the recording it was encoded from" in \
            " ".join(result.output.split())
        assert (tree / "top.wav").read_bytes() == recording
    assert (tree / "a" / "x.wav").is_file()
    again = invoke("decode", tree / "a", tree / "elsewhere", "--model", tiny_model_dir)
    assert again.exit_code == 0
    skipped = invoke("decode", tree / "a", tree / "elsewhere", "--model", tiny_model_dir)
    assert "kept: " in skipped.output and "elsewhere/x.wav" in " ".join(skipped.output.split())
    # an audio file there may be a recording, not an earlier decode: --force is not offered as a redo
    assert " kept (output exists: an earlier decode, or a recording of that name, which --force would replace)" \
        in " ".join(skipped.output.split()) and "redoes" not in skipped.output


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_worker_whose_batch_died_before_it_started_exits_quietly():
    # (a batch SIGKILLed while its workers started: each printed "Exception in initializer" and a traceback)
    script = ("import multiprocessing, types\n"
              "multiprocessing.parent_process = lambda: types.SimpleNamespace(pid=-1)   # not our parent: gone\n"
              "from codec.batch import _stop_with_parent\n"
              "_stop_with_parent()\n"
              "print('still running')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (143, "", "")


def test_an_output_folder_inside_the_input_folder_is_not_coded_again(tiny_model_dir, tree):
    # (each rerun coded the decoded copies there again, one level deeper: in/codes/codes/...)
    codes = tree / "codes"
    assert invoke("encode", tree, codes, "--model", tiny_model_dir).exit_code == 0
    assert invoke("decode", codes, codes, "--model", tiny_model_dir).exit_code == 0   # audio beside the codes
    result = invoke("encode", tree, codes, "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert f"note: left out 3 files below the output folder {codes}, which lies inside the input folder: taken for " \
        f"earlier outputs, which coded again would nest one level deeper at each run (to code them, give an output " \
        f"folder outside the input folder, or the files by name)" in " ".join(result.output.split())
    assert "encoded 0 files, 3 already done" in result.output and not (codes / "codes").exists()
    # the input folder's only .codes files lie below the output folder: nothing to decode fails, as no inputs
    result = invoke("decode", tree, codes, "--model", tiny_model_dir)
    assert result.exit_code == 1 and f"error: the only 3 input files lie below the output folder {codes}, inside " \
        f"the input folder" in " ".join(result.output.split())


def test_a_quoted_glob_takes_the_folders_it_matches_as_the_shells_expansion_does(tree):
    # (the folders a quoted in/* matched were dropped: 1 file coded, where in/* expanded by the shell gave 3)
    quoted = find_files([f"{tree}/*"], (".wav", ".flac"))
    expanded = find_files([str(tree / "a"), str(tree / "top.wav")], (".wav", ".flac"))
    assert sorted(str(place) for _, place in quoted) == sorted(str(place) for _, place in expanded) == \
        ["a/b/y.wav", "a/x.flac", "top.wav"]
    assert len(find_files([f"{tree}/**"], (".wav", ".flac"))) == 3   # a folder and its files, once each


def test_a_quoted_globstar_does_not_follow_links_back_up_the_tree(tree):
    # (Python's glob followed them: in/a/up -> .. matched each file again at every depth, and a
    # second such link made the batch run for ever)
    (tree / "a" / "up").symlink_to("..")
    (tree / "a" / "b" / "self").symlink_to("../b")
    (tree / ".hidden.wav").write_bytes(b"")
    found = find_files([f"{tree}/**/*.wav", f"{tree}/**/*.flac"], (".wav", ".flac"))
    assert sorted(str(file.relative_to(tree)) for file, _ in found) == ["a/b/y.wav", "a/x.flac", "top.wav"]
    found = find_files([f"{tree}/**/.hidden.wav"], (".wav",))   # a dotted name the pattern names is matched
    assert [file.name for file, _ in found] == [".hidden.wav"]


def test_worker_processes_that_cannot_start_are_named_not_taken_for_a_closed_stdout(tiny_model_dir, tree, tmp_path,
                                                                                    monkeypatch):
    """Where a child process cannot run Python, multiprocessing's pipe to it breaks while the pool
    starts: encode and eval with --jobs 2 exited 141 without a word, as for a reader of stdout that
    went away (`| head`). Nothing is written."""
    from multiprocessing import resource_tracker

    def broken():
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(resource_tracker, "ensure_running", broken)
    evaluation = ("eval", tree, "--bitrates", "6", "--out", tmp_path / "ev")
    for arguments in (("encode", tree, tmp_path / "codes"), evaluation):
        result = invoke(*arguments, "--model", tiny_model_dir, "--jobs", "2")
        assert result.exit_code == 1, result.output
        message = "error: cannot start worker processes (Broken pipe); run with --jobs 1"
        assert message in " ".join(result.output.split())
    assert not any(path.is_file() for path in (tmp_path / "codes").rglob("*")) and not (tmp_path / "ev").exists()


def test_a_stopped_batch_counts_the_outputs_written_on_disk(tmp_path):
    """A worker's finished file may not have been reported when the batch stops (with --jobs 2 the
    count was one short): the outputs written since the start are counted, not the outcomes; with
    --force, the outputs not yet redone may be stale, so no rerun is advised."""
    import time

    from codec.batch import BatchSettings, Job, _how_far

    jobs = [Job(tmp_path / f"{name}.wav", tmp_path / f"{name}.codes") for name in "abc"]
    jobs[0].target.write_bytes(b"older")
    os.utime(jobs[0].target, (time.time() - 3600, time.time() - 3600))   # from an earlier run (--force redoes it)
    started = time.time()
    jobs[1].target.write_bytes(b"written by a worker")
    assert _how_far(jobs, started, BatchSettings("encode")) == \
        "after 1 of the 3 files to encode were encoded; the same command again encodes the rest (outputs that exist " \
        "are kept)"
    assert _how_far(jobs[1:2], started, BatchSettings("decode", force=True)) == \
        "after 1 of the 1 file to decode was decoded, each whole"
