"""The CLI, run in-process on generated audio as a user would run it."""

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from codec.errors import CodecError
from tests.conftest import REPO, tone, write_audio
from tests.conftest import run_cli as invoke


@pytest.fixture
def speech_wav(tmp_path):
    return write_audio(tmp_path / "speech.wav", tone(1.3, 44100, channels=2), 44100, "PCM_24")


def test_encode_decode_info(tiny_model_dir, speech_wav, tmp_path):
    codes, out = tmp_path / "speech.codes", tmp_path / "speech_out.wav"
    encoded = invoke("encode", speech_wav, codes, "--bitrate", "6", "--model", tiny_model_dir)
    assert encoded.exit_code == 0   # stereo: the nominal rate per channel and in all, as the measured one is
    assert "(6 kbps nominal per channel, 12 in all)" in " ".join(encoded.output.split())
    assert invoke("decode", codes, out, "--model", tiny_model_dir).exit_code == 0
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.frames) == (44100, 2, sf.info(str(speech_wav)).frames)
    result = invoke("info", codes, "--json")
    assert result.exit_code == 0
    meta = json.loads(result.stdout)
    assert meta["codebooks"] == 12 and meta["channels"] == 2 and meta["model"] == "tiny-16k"
    assert meta["nominal_kbps"] == 12.0 and meta["nominal_kbps_per_channel"] == 6.0   # beside file_kbps: both channels
    assert 12.0 < meta["file_kbps"] < 14.0
    piped = invoke("info", "-", "--json", input=codes.read_bytes())   # - is stdin, as everywhere else
    assert piped.exit_code == 0 and json.loads(piped.stdout) == meta
    data = codes.read_bytes()   # info checks the whole file's layout, not only its first chunk
    for name, damaged, message in [("cut", data[:-3], "truncated in chunk 0"),
                                   ("long", data + b"\0\0", "2 unexpected bytes after the last chunk")]:
        (tmp_path / f"{name}.codes").write_bytes(damaged)
        result = invoke("info", tmp_path / f"{name}.codes")
        assert result.exit_code == 1 and f"{name}.codes: {message}" in result.output


def test_info_on_a_codes_file_answers_without_torch(tiny_model_dir, speech_wav, tmp_path):
    """A .codes file's metadata comes from its bytes: ``codec info`` neither imports torch nor
    builds a network for it (3.7 s -> 0.4 s on the CI machine)."""
    codes = tmp_path / "speech.codes"
    assert invoke("encode", speech_wav, codes, "--model", tiny_model_dir).exit_code == 0
    probe = ("import sys; from cli.main import app; from typer.testing import CliRunner; "
             f"result = CliRunner().invoke(app, ['info', {str(codes)!r}, '--json']); "
             "print(result.exit_code, 'torch' in sys.modules, 'scipy.signal' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert run.stdout.split() == ["0", "False", "False"], run.stderr[-2000:]


def test_encode_and_decode_do_not_import_what_they_do_not_use(tiny_model_dir, speech_wav, tmp_path):
    """``torch._dynamo`` (torch.compile's tracer) is for training runs that compile: importing it
    with the quantizers (a ``torch.compiler.disable`` decorator did) added 1-1.5 s to every
    command's start. The range coder (constriction) is for models with an entropy model (0.1 s)."""
    codes, decoded = tmp_path / "speech.codes", tmp_path / "decoded.wav"
    probe = ("import sys; from cli.main import app; from typer.testing import CliRunner; "
             f"encoded = CliRunner().invoke(app, ['encode', {str(speech_wav)!r}, {str(codes)!r}, "
             f"'--model', {str(tiny_model_dir)!r}]); "
             f"decoded = CliRunner().invoke(app, ['decode', {str(codes)!r}, {str(decoded)!r}, "
             f"'--model', {str(tiny_model_dir)!r}]); "
             "print(encoded.exit_code, decoded.exit_code, any(m.startswith('torch._dynamo') for m in sys.modules), "
             "'constriction' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert run.stdout.split() == ["0", "0", "False", "False"], run.stderr[-2000:]
    assert decoded.is_file()


def test_refuses_overwrite_without_force(tiny_model_dir, speech_wav, tmp_path):
    codes = tmp_path / "speech.codes"
    codes.write_bytes(b"keep me")
    result = invoke("encode", speech_wav, codes, "--model", tiny_model_dir)
    assert result.exit_code == 1 and "--force" in result.output
    assert codes.read_bytes() == b"keep me"
    codes.chmod(0o600)   # a private file stays private when --force replaces it
    assert invoke("encode", speech_wav, codes, "--model", tiny_model_dir, "--force").exit_code == 0
    assert codes.read_bytes().startswith(b"CODC") and codes.stat().st_mode & 0o777 == 0o600


def test_force_refuses_a_pipe_and_writes_through_a_link(tiny_model_dir, speech_wav, tmp_path):
    fifo, target, link = tmp_path / "fifo.codes", tmp_path / "target.codes", tmp_path / "link.codes"
    os.mkfifo(fifo)
    result = invoke("encode", speech_wav, fifo, "--model", tiny_model_dir, "--force")
    assert result.exit_code == 1 and "is not a regular file" in result.output
    assert fifo.is_fifo()
    target.write_bytes(b"old")
    link.symlink_to(target)
    assert invoke("encode", speech_wav, link, "--model", tiny_model_dir, "--force").exit_code == 0
    assert link.is_symlink() and target.read_bytes().startswith(b"CODC")
    loop = tmp_path / "loop.codes"
    loop.symlink_to(loop)
    result = invoke("encode", speech_wav, loop, "--model", tiny_model_dir, "--force")
    assert result.exit_code == 1 and "loop of symbolic links" in result.output


def test_decoding_through_a_link_writes_the_format_of_its_target(tiny_model_dir, speech_wav, tmp_path):
    codes, target, link = tmp_path / "speech.codes", tmp_path / "target.flac", tmp_path / "link.wav"
    assert invoke("encode", speech_wav, codes, "--model", tiny_model_dir).exit_code == 0
    target.write_bytes(b"old")
    link.symlink_to(target)
    assert invoke("decode", codes, link, "--model", tiny_model_dir, "--force").exit_code == 0
    assert link.is_symlink() and sf.info(target).format == "FLAC"
    assert invoke("decode", codes, link, "--model", tiny_model_dir, "--force", "--format", "flac").exit_code == 0
    result = invoke("decode", codes, link, "--model", tiny_model_dir, "--force", "--format", "wav")
    assert result.exit_code == 1 and "--format wav does not match" in result.output and "(a link to" in result.output
    (tmp_path / "odd.wav").symlink_to(tmp_path / "target.txt")
    result = invoke("decode", codes, tmp_path / "odd.wav", "--model", tiny_model_dir)
    assert result.exit_code == 1 and "odd.wav (a link to " in result.output and "'.txt' files" in result.output
    assert not (tmp_path / "target.txt").exists()


def test_temporary_outputs_have_unique_names(tiny_model_dir, speech_wav, tmp_path, monkeypatch):
    """A file named as a temporary output once was is neither read nor replaced; two writers of
    one output get two temporary files; a name near the 255-byte limit still has room for one."""
    from codec.atomic import create_partial

    kept = tmp_path / ".x.codes.partial.codes"
    kept.write_bytes(speech_wav.read_bytes())
    assert invoke("encode", kept, tmp_path / "x.codes", "--model", tiny_model_dir).exit_code == 0
    assert kept.read_bytes() == speech_wav.read_bytes() and (tmp_path / "x.codes").exists()
    first, second = create_partial(tmp_path / "y.wav"), create_partial(tmp_path / "y.wav")
    assert first != second and first.suffix == ".wav" and first.name.startswith(".y.wav.")
    long_name = tmp_path / ("é" * 120 + ".flac")    # 245 bytes
    assert len(create_partial(long_name).name.encode()) <= 255
    assert invoke("encode", speech_wav, tmp_path / ("n" * 249 + ".codes"), "--model", tiny_model_dir).exit_code == 0


def test_ctrl_c_exits_with_130_and_leaves_no_file(tiny_model_dir, speech_wav, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("codec.coding.encode_file", interrupted)
    result = invoke("encode", speech_wav, tmp_path / "x.codes", "--model", tiny_model_dir)
    assert result.exit_code == 130 and "interrupted" in result.output
    assert not (tmp_path / "x.codes").exists()


def test_more_channels_than_the_format_holds_names_the_output(tiny_model_dir, speech_wav, tmp_path):
    mono, codes = tmp_path / "mono.wav", tmp_path / "mono.codes"
    sf.write(mono, sf.read(speech_wav)[0][:, 0], 44100)
    assert invoke("encode", mono, codes, "--model", tiny_model_dir).exit_code == 0
    result = invoke("decode", codes, tmp_path / "ten.flac", "--model", tiny_model_dir, "--channels", "10")
    assert result.exit_code == 1 and "ten.flac: FLAC holds at most 8 channels, not 10" in result.output
    result = invoke("decode", codes, tmp_path / "many.wav", "--model", tiny_model_dir, "--channels", "2000")
    assert result.exit_code == 1 and "many.wav: WAV holds at most 1024 channels, not 2000" in result.output
    result = invoke("decode", codes, tmp_path / "fast.ogg", "--model", tiny_model_dir, "-r", "384000")
    assert result.exit_code == 1 and "fast.ogg: OGG Vorbis holds at most 192000 Hz" in result.output
    result = invoke("decode", codes, tmp_path / "wide.ogg", "--model", tiny_model_dir, "--channels", "256")
    assert result.exit_code == 1 and "wide.ogg: OGG holds at most 255 channels, not 256" in result.output
    result = invoke("decode", codes, tmp_path / "wide.aiff", "--model", tiny_model_dir, "--channels", "1025")
    assert result.exit_code == 1 and "wide.aiff: AIFF holds at most 1024 channels, not 1025" in result.output
    result = invoke("decode", codes, tmp_path / "odd.flac", "--model", tiny_model_dir, "-r", "96001")
    assert result.exit_code == 1 and "odd.flac: FLAC holds a rate above 65535 Hz only in steps of 10 Hz, not " \
        "96001; choose one such as 96000, or write .wav" in " ".join(result.output.split())
    assert "partial" not in result.output and not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("args,message", [
    (["encode", "missing.wav", "x.codes"], "no such file"),
    (["encode", "{wav}", "x.codes", "--bitrate", "5"], "not supported"),
    (["decode", "missing.codes", "x.wav"], "no such file"),
    (["decode", "{wav}", "x.wav"], "not a .codes file"),
    (["info", "{wav}"], "not a .codes file"),
    (["encode", "{wav}", "x.codes", "--model", "no-such-model"], "not found"),
    (["eval", "{wav}", "--model", "no-such-model", "--out", "ev"], "not found"),
    (["train", "no-such-recipe.yaml"], "recipe not found"),
    (["train", "."], ".: is a folder, not a recipe file"),
    (["export", "--out", "{wav}"], "is a file, not a folder; the export writes a folder of graphs"),
    (["export", "--out", "/dev/null"], "--out /dev/null: is a device, pipe or socket, not a folder; the export"),
    (["export", "--out", "gone"], "--out gone: a link to nowhere, which does not exist; the export writes"),
    (["eval", "{wav}", "--out", "gone"], "--out gone: a link to nowhere, which does not exist; give a folder"),
    (["export", "--out", "loop.wav"], "--out loop.wav: is a loop of symbolic links; the export writes a folder"),
    (["export", "--out", "no/such/x"], "--out no/such/x: no such folder for it (no/such)"),
    (["export", "--out", "empty.wav/x"], "--out empty.wav/x: empty.wav is a file, not a folder"),
    (["train", "{wav}"], "not a text file; a recipe is YAML"),
    (["eval", "{wav}", "--bitrates", "", "--out", "ev"], "expected comma-separated numbers"),
    (["encode", "{wav}", "x.codes", "--jobs", "0"], "--jobs 0: must be at least 1"),
    (["decode", "missing.codes", "x.wav", "--jobs", "-1"], "--jobs -1: must be at least 1"),
    (["encode", "{wav}", "x.codes", "--bitrate", "6.0000001"], "bitrate 6.0000001 kbps is not supported"),
    (["encode", "{wav}", "new/"], "new/: names a folder (it ends with /); give a file name such as new/"),
    (["decode", "missing.codes", "out/"], "missing.codes: no such file"),   # (the input first: it is not there)
    (["encode", "{wav}", "{wav}/x.codes"], "speech.wav: is a file, not a directory for the output"),
    (["encode", "{wav}/", "x.codes"], "speech.wav/: is a file, not a folder (it ends with /)"),
    (["encode", "", "x.codes"], "an empty file name was given (INPUT)"),
    (["encode", "{wav}", ""], "an empty file name was given (OUTPUT)"),
    (["info", ""], "an empty file name was given (PATH)"),
    (["eval", "", "--out", "ev"], "an empty file name was given (INPUT)"),
    (["eval", "{wav}", "--threads", "0", "--out", "ev"], "--threads 0: must be 1 to "),
    (["encode", "empty.wav", "x.codes"], "empty.wav: is empty (0 bytes), not an audio file"),
    (["encode", "loop.wav", "x.codes"], "loop.wav: is a symbolic link to a missing file (or a loop of links)"),
    # an audio file as the output: the refusal that --force cannot lift comes first, not "pass --force"
    (["encode", "{wav}", "empty.wav"], "empty.wav: is an audio file, which encoding would replace with codes"),
    (["stream", "--input", "{wav}", "--save", "loop.wav", "--output", "x.wav", "--fast"],
     "--save: loop.wav: is a loop of symbolic links; give a file name"),
])
def test_errors_are_one_line(speech_wav, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.wav").touch()
    (tmp_path / "loop.wav").symlink_to("loop.wav")
    (tmp_path / "gone").symlink_to("nowhere")
    result = invoke(*[a.replace("{wav}", str(speech_wav)) for a in args])
    assert result.exit_code == 1
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not {"new", "out", "x.codes", "x.wav", "ev"} & {p.name for p in tmp_path.iterdir()}   # nothing written


def test_an_unknown_model_gets_the_hint_that_fits_the_command(speech_wav, tmp_path):
    encode = invoke("encode", speech_wav, tmp_path / "x.codes", "--model", "no-such-model")
    assert encode.exit_code == 1 and "pass its directory with --model" in encode.output
    export = invoke("export", "no-such-model", "--out", tmp_path / "exported")  # the model is an argument
    assert export.exit_code == 1 and "not found" in export.output and "--model" not in export.output
    assert not (tmp_path / "exported").exists()
    train = invoke("train", REPO / "recipes" / "tiny.yaml", "-o", "run.init_from=no-such-model",
                   "-o", f"run.out_dir={tmp_path / 'run'}", "-o", f"data.train_dir={speech_wav.parent}")
    assert train.exit_code == 1 and "recipe value run.init_from: model 'no-such-model' not found" in train.output
    assert "--model" not in train.output
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    for args in (["encode", speech_wav, tmp_path / "y.codes", "--model", folder], ["info", folder]):
        result = invoke(*args)  # a folder, but no model's: say so, not how to pass a folder
        assert result.exit_code == 1 and "it has no config.json" in result.output and "--model" not in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_decode_with_wrong_model_is_refused(tiny_model_dir, speech_wav, tmp_path):
    codes = tmp_path / "speech.codes"
    invoke("encode", speech_wav, codes, "--model", tiny_model_dir)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    (other / "model.safetensors").write_bytes((tiny_model_dir / "model.safetensors").read_bytes() + b"")
    # same weights: accepted; a model with another name is refused
    assert invoke("decode", codes, tmp_path / "a.wav", "--model", other).exit_code == 0
    config = json.loads((other / "config.json").read_text())
    config["name"] = "renamed"
    (other / "config.json").write_text(json.dumps(config))
    result = invoke("decode", codes, tmp_path / "b.wav", "--model", other)
    assert result.exit_code == 1 and f"{codes}: the codes were made by model 'tiny-16k'" in result.output


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.startswith("codec ")


def test_paths_with_brackets_are_printed_as_they_are(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("encode", "take[1]/a[b].wav", "x.codes")
    assert result.exit_code == 1 and "take[1]/a[b].wav: no such file" in result.output


def test_an_unreadable_input_gets_a_one_line_error(speech_wav, tmp_path, monkeypatch):
    """As for a missing file: this tool's error and exit code 1, not click's usage box (exit code 2).
    (Tests run as root, who reads any file, so the permission is denied through os.access.)"""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != speech_wav and real_access(path, mode))
    result = invoke("encode", speech_wav, tmp_path / "x.codes")
    assert result.exit_code == 1 and f"{speech_wav}: permission denied" in result.output
    assert not (tmp_path / "x.codes").exists()


def test_stdin_errors_suggest_the_command_that_was_run(tmp_path):
    for command, example in (("encode", "codec encode - out.codes < in.wav"),
                             ("decode", "codec decode - out.wav < in.codes")):
        result = invoke(command, "-", tmp_path / "out", input=b"")
        assert result.exit_code == 1 and f"stdin is empty; pipe the input in (e.g. {example})" in result.output


def test_a_temporary_file_that_cannot_be_made_names_the_output_and_the_reason(tmp_path):
    from codec.atomic import write_atomically

    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(CodecError, match=r"file/out.wav: cannot write \(Not a directory\)"):
        write_atomically(tmp_path / "file" / "out.wav", lambda tmp: tmp.write_bytes(b"x"))


def test_a_full_disk_under_torch_save_is_named_as_one(tmp_path, monkeypatch):
    """torch.save says "[enforce fail at inline_container.cc] unexpected pos" when the disk fills
    up (a training checkpoint): the error says the disk is full; other RuntimeErrors pass through."""
    import collections

    from codec.atomic import write_atomically

    def torch_save(tmp):
        tmp.write_bytes(b"part of a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1832704 vs 1832592")

    free = collections.namedtuple("statvfs", "f_bavail f_frsize")
    monkeypatch.setattr(os, "statvfs", lambda path: free(0, 4096))
    with pytest.raises(CodecError, match=r"checkpoint.pt: cannot write \(No space left on device\)"):
        write_atomically(tmp_path / "checkpoint.pt", torch_save)
    monkeypatch.setattr(os, "statvfs", lambda path: free(10 ** 6, 4096))
    with pytest.raises(RuntimeError, match="unexpected pos"):
        write_atomically(tmp_path / "checkpoint.pt", torch_save)
    assert list(tmp_path.iterdir()) == []


def test_export_over_an_earlier_one_removes_its_stale_graphs_and_keeps_other_files(tiny_model_dir, tmp_path):
    out = tmp_path / "exported"
    out.mkdir()
    (out / "codec.json").write_text(json.dumps({"graphs": {"encoder_99": {"file": "encoder_99.onnx"}}}))
    (out / "encoder_99.onnx").write_bytes(b"an earlier model's graph")
    (out / "notes.txt").write_text("mine")
    result = invoke("export", tiny_model_dir, "--out", out, "--force")
    assert result.exit_code == 0, result.output
    assert not (out / "encoder_99.onnx").exists() and (out / "notes.txt").read_text() == "mine"
    assert "encoder_99" not in result.output and "notes.txt" not in result.output and "decoder.onnx" in result.output


def test_export_of_one_bitrate_writes_its_graphs_only(tiny_model_dir, tmp_path):
    out = tmp_path / "exported"
    assert invoke("export", tiny_model_dir, "--out", out).exit_code == 0
    result = invoke("export", tiny_model_dir, "--out", out, "--force", "-b", "3")   # (over every bitrate's)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["codec.json", "decoder.onnx", "encoder.onnx", "quantizer_6.onnx"]
    result = invoke("export", tiny_model_dir, "--out", tmp_path / "seven", "--bitrate", "7")
    assert result.exit_code == 1 and "--bitrate: bitrate 7 kbps is not supported by tiny-16k" in result.output
    assert not (tmp_path / "seven").exists()


def test_export_into_a_folder_a_killed_export_left_its_staging_in(tiny_model_dir, tmp_path):
    out = tmp_path / "exported"
    (out / ".export.old.partial").mkdir(parents=True)   # (SIGKILL leaves it; ls shows nothing)
    (out / ".export.old.partial" / "decoder.onnx").write_bytes(b"half a graph")
    os.utime(out / ".export.old.partial", (1e9, 1e9))   # hours old: removed by the next export
    result = invoke("export", tiny_model_dir, "--out", out)
    assert result.exit_code == 0, result.output
    assert not (out / ".export.old.partial").exists() and (out / "decoder.onnx").is_file()


def test_export_takes_the_model_as_the_other_commands_do_too(tiny_model_dir, tmp_path):
    # (codec export -m DIR said "No such option: -m": encode, decode, eval and stream take --model)
    result = invoke("export", "-m", tiny_model_dir, "--out", tmp_path / "by-option")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "by-option" / "decoder.onnx").is_file()
    result = invoke("export", tiny_model_dir, "--model", "conv-16k", "--out", tmp_path / "two")
    assert result.exit_code == 1 and f"two models given: {tiny_model_dir} (MODEL) and conv-16k (--model); give " \
        "one" in " ".join(result.output.split())
    assert not (tmp_path / "two").exists()
    result = invoke("export", tiny_model_dir, "--model", f"{tiny_model_dir}/", "--out", tmp_path / "one")
    assert result.exit_code == 0, result.output   # one folder, spelt two ways


@pytest.mark.parametrize("stop,code", [("SIGTERM", 143), ("SIGQUIT", 131)])   # (kill; Ctrl-\)
def test_a_stopping_signal_removes_the_temporary_file_and_exits_128_plus_it(tmp_path, stop, code):
    import signal

    import typer

    from cli.main import user_errors
    from codec.atomic import write_atomically
    from codec.signals import STOPPING_SIGNALS, stop_on_termination, take_raised

    def write(tmp):
        tmp.write_bytes(b"half a file")
        os.kill(os.getpid(), getattr(signal, stop))

    @user_errors
    def command():
        write_atomically(tmp_path / "out.wav", write)

    previous = {signum: signal.getsignal(signum) for signum in (*STOPPING_SIGNALS, signal.SIGINT)}
    try:
        stop_on_termination()
        with pytest.raises(typer.Exit) as stopped:
            command()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert stopped.value.exit_code == code and list(tmp_path.iterdir()) == []
    assert take_raised() == [getattr(signal, stop)] and take_raised() == []


def test_a_command_that_has_ended_ignores_a_second_ctrl_c():
    """Once a command has ended, the interpreter shuts down: a Ctrl-C then raised in an atexit
    callback printed "Exception ignored in" and a traceback after the command's own message."""
    import signal

    from codec.signals import STOPPING_SIGNALS, ignore_stopping_signals, stop_on_termination

    previous = {signum: signal.getsignal(signum) for signum in (*STOPPING_SIGNALS, signal.SIGINT)}
    try:
        stop_on_termination()
        signal.signal(signal.SIGHUP, signal.SIG_DFL)   # a handler of another kind stays
        ignore_stopping_signals()
        assert [signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)] \
            == [signal.SIG_IGN] * 3 and signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_a_named_pipe_as_the_input_points_to_stdin(tmp_path):
    fifo = tmp_path / "in.wav"
    os.mkfifo(fifo)
    for command, output in (("encode", "x.codes"), ("decode", "x.wav")):
        result = invoke(command, fifo, tmp_path / output)
        assert result.exit_code == 1 and "in.wav: is a pipe or device, not a file; give - as the input" in result.output


def test_a_file_named_dash_is_given_as_dot_slash_dash(tmp_path, monkeypatch):
    """``-`` is stdin or stdout; ``./-`` is a file called ``-``, as in other command-line tools."""
    monkeypatch.chdir(tmp_path)
    sf.write(str(tmp_path / "-"), tone(0.5, 16000), 16000, format="WAV")
    result = invoke("encode", "./-", "a.codes", "--model", "conv-16k")
    assert result.exit_code == 0, result.output
    # as an output, a file (refused for want of a suffix), not stdout
    result = invoke("decode", "a.codes", "./-", "--force")
    assert result.exit_code == 1 and "cannot write a file without an extension" in result.output
    assert sf.info(str(tmp_path / "-")).frames == 8000   # the input, untouched


def test_decode_names_an_unwritable_suffix_before_asking_for_force(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sf.write(str(tmp_path / "in.wav"), tone(0.5, 16000), 16000)
    assert invoke("encode", "in.wav", "a.codes", "--model", "conv-16k").exit_code == 0
    (tmp_path / "out.xyz").write_text("mine")
    for force in ((), ("--force",)):   # (--force would only have led to this error)
        result = invoke("decode", "a.codes", "out.xyz", *force)
        assert result.exit_code == 1 and "out.xyz: cannot write '.xyz' files; use .wav" in result.output, result.output
    assert (tmp_path / "out.xyz").read_text() == "mine"


def test_decode_into_a_folder_or_a_link_to_a_device_says_what_the_output_is(tmp_path, monkeypatch):
    """Not "cannot write a file without an extension", as the suffix check, which comes first, said."""
    monkeypatch.chdir(tmp_path)
    sf.write(str(tmp_path / "in.wav"), tone(0.5, 16000), 16000)
    assert invoke("encode", "in.wav", "a.codes", "--model", "conv-16k").exit_code == 0
    (tmp_path / "folder").mkdir()
    (tmp_path / "null.wav").symlink_to("/dev/null")
    for output, expected in (("folder", "folder: is a directory; give a file name"),
                             ("null.wav", "null.wav: is not a regular file (a device, pipe or socket)")):
        result = invoke("decode", "a.codes", output, "--force")
        assert result.exit_code == 1 and expected in result.output, result.output


def test_errors_and_summaries_start_on_the_first_line_when_stderr_is_not_a_terminal(tmp_path):
    """No progress bar off a terminal: a stopped one left an empty line before the message."""
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.wav").write_text("not audio")
    result = invoke("eval", tmp_path / "junk", "--out", tmp_path / "eval")
    assert result.exit_code == 1 and result.output.startswith("error: no file could be evaluated"), result.output
    result = invoke("encode", tmp_path / "junk", tmp_path / "codes", "--model", "conv-16k")
    assert result.exit_code == 1 and result.output.startswith("failed: "), result.output


def test_a_file_name_in_no_valid_encoding_is_shown_by_its_bytes(tmp_path):
    # the console script reconfigures stderr; a lone surrogate (PEP 383) printed as \udcff names no byte
    missing = os.path.join(os.fsencode(tmp_path), b"speech\xff.codes")
    result = subprocess.run([sys.executable, "-c", "from codec.cli.main import run; run()", "info", missing],
                            capture_output=True, env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert result.returncode == 1 and b"speech\\xff.codes: no such file" in result.stderr, result.stderr


def test_without_bitrate_a_model_without_6_kbps_codes_at_its_nearest(tiny_model_dir, speech_wav, tmp_path):
    import shutil

    single = shutil.copytree(tiny_model_dir, tmp_path / "single-rate")
    config = json.loads((single / "config.json").read_text())
    (single / "config.json").write_text(json.dumps({**config, "bitrates_kbps": [1.5, 3.0]}))
    codes = tmp_path / "s.codes"
    result = invoke("encode", speech_wav, codes, "--model", single)
    assert result.exit_code == 0, result.output
    assert json.loads(invoke("info", codes, "--json").stdout)["nominal_kbps_per_channel"] == 3.0
    from codec.models import load_model

    network = load_model(single)
    for offered, default in [([1.5, 3.0], 3.0), ([1.5, 3.0, 6.0, 12.0], 6.0), ([3.0, 9.0], 9.0), ([12.0], 12.0)]:
        network.config.bitrates_kbps = offered
        assert network.default_bitrate() == default


def test_info_on_a_pipe_says_so_and_decode_names_the_file_whose_model_is_unknown(tiny_model_dir, speech_wav,
                                                                               tmp_path):
    import dataclasses

    from codec.bitstream import to_bytes
    from codec.coding import read_codes

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = invoke("info", fifo)   # not opened: reading a pipe nobody writes to would wait forever
    assert result.exit_code == 1 and "fifo: is a pipe or device, not a file; give - as PATH" in result.output
    codes = tmp_path / "s.codes"
    assert invoke("encode", speech_wav, codes, "--model", tiny_model_dir).exit_code == 0
    parsed = read_codes(codes)
    for name, message in [("/some/path", "the file names its model '/some/path', which is not a model's name"),
                          ("no-such-model", "model 'no-such-model' not found"),
                          ("a\n\x1b[31mred", "the file names its model 'a\\n\\x1b[31mred', which is not"),
                          ("x" * 60000, "the file names its model 'xxxxxxxx")]:
        renamed = tmp_path / "renamed.codes"
        renamed.write_bytes(to_bytes(dataclasses.replace(parsed, metadata=dataclasses.replace(parsed.metadata,
                                                                                              model=name))))
        result = invoke("decode", renamed, tmp_path / "out.wav")
        assert result.exit_code == 1 and f"{renamed}: {message}" in result.output, result.output
        assert len(result.output) < 400 and result.output.count("\n") == 1 and "\x1b" not in result.output
    escaped = dataclasses.replace(parsed, metadata=dataclasses.replace(parsed.metadata, model="a\nb"))
    renamed.write_bytes(to_bytes(escaped))   # info shows a control character escaped
    assert "a\\x0ab" in invoke("info", renamed).output
    # C1 controls, a bidirectional override (text shown reversed) and a lone surrogate (unprintable)
    escaped = dataclasses.replace(parsed, metadata=dataclasses.replace(parsed.metadata, model="a\x9b\u202eb\ud800"))
    renamed.write_bytes(to_bytes(escaped))
    result = invoke("info", renamed)
    assert result.exit_code == 0 and "a\\x9b\\u202eb\\ud800" in result.output, result.output
    result = invoke("decode", renamed, tmp_path / "out.wav")
    assert result.exit_code == 1 and "model 'a\\x9b\\u202eb\\ud800' not found" in result.output, result.output
    # a stdout whose encoding lacks a character gets it escaped (it failed as an internal error)
    escaped = dataclasses.replace(parsed, metadata=dataclasses.replace(parsed.metadata, model="sm\u00e4ll-\u6a21"))
    renamed.write_bytes(to_bytes(escaped))
    result = subprocess.run([sys.executable, "-c", "from codec.cli.main import run; run()", "info", renamed],
                            capture_output=True, env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0 and b"sm\\xe4ll-\\u6a21\n" in result.stdout, result.stderr


def test_a_file_size_limit_is_named_as_the_reason_a_decoded_file_cannot_be_written(tiny_model_dir, speech_wav,
                                                                                      tmp_path):
    import resource

    codes = tmp_path / "s.codes"
    assert invoke("encode", speech_wav, codes, "--model", tiny_model_dir).exit_code == 0
    result = subprocess.run([sys.executable, "-c", "from codec.cli.main import run; run()", "decode", codes,
                             tmp_path / "out.wav", "--model", tiny_model_dir], capture_output=True, text=True,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000)))
    assert result.returncode == 1 and result.stderr == (
        f"error: {tmp_path / 'out.wav'}: cannot write (File too large: this process may write files of at most "
        f"10000 bytes (ulimit -f))\n"), result.stderr   # (libsndfile said "System error.")
    assert not (tmp_path / "out.wav").exists() and not list(tmp_path.glob(".out*"))   # no partial file


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("arguments", [["--version"], ["encode", "--help"], ["models"], ["models", "--json"]])
def test_help_version_and_lists_on_a_full_disk_are_one_line(arguments):
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-c", "from codec.cli.main import run; run()", *arguments],
                                stdout=full, stderr=subprocess.PIPE, text=True)
    assert result.returncode == 1 and result.stderr == "error: cannot write to stdout (No space left on device)\n"


@pytest.mark.parametrize("arguments", [["--version"], ["--help"], ["encode", "--help"]])
def test_help_and_version_to_a_reader_that_left_exit_141(arguments):
    read, write = os.pipe()
    os.close(read)   # the reader went away before anything was written (`codec --help | true`)
    with os.fdopen(write, "w") as pipe:
        result = subprocess.run([sys.executable, "-c", "from codec.cli.main import run; run()", *arguments],
                                stdout=pipe, stderr=subprocess.PIPE, text=True)
    assert result.returncode == 141 and result.stderr == ""


@pytest.mark.long
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (Debian package ffmpeg) for MP3")
def test_a_closed_standard_stream_fails_only_what_needs_it(tiny_model_dir, speech_wav, tmp_path):
    """Started with ``>&-``, ``2>&-`` or ``<&-``: a command that does not use the stream works
    (an MP3's decoder messages are collected through stderr), one that does says it is closed."""
    from codec.cli.main import CLOSED_STDOUT

    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(speech_wav), str(tmp_path / "in.mp3")], check=True)
    command = shlex.join([sys.executable, "-c", "from codec.cli.main import run; run()"])

    def shell(arguments: list, redirection: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", f"{command} {shlex.join(map(str, arguments))} {redirection}"],
                              capture_output=True, text=True)

    for closed in (">&-", "2>&-"):
        out = tmp_path / f"{len(closed)}.codes"
        result = shell(["encode", tmp_path / "in.mp3", out, "--model", tiny_model_dir], closed)
        assert result.returncode == 0 and out.stat().st_size > 0, result.stderr
    for arguments in (["--version"], ["models"], ["info", tiny_model_dir]):   # one message each, not two
        result = shell(arguments, ">&-")
        assert result.returncode == 1 and result.stderr == f"error: {CLOSED_STDOUT}\n", arguments
    result = shell(["encode", "-", tmp_path / "x.codes", "--model", tiny_model_dir], "<&-")
    assert result.returncode == 1 and result.stderr.startswith("error: stdin is closed; pipe the input in")
    result = shell(["encode", speech_wav, "-", "--model", tiny_model_dir], ">&-")
    assert result.returncode == 1 and result.stderr.startswith("error: stdout is closed")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_buffering_stdin_names_the_side_that_failed():
    import tempfile

    from codec.pipes import _copy_stdin

    with pytest.raises(CodecError, match=f"stdin: cannot keep it in the temporary folder {tempfile.gettempdir()} "
                                         r"\(No space left on device\); set TMPDIR"):
        _copy_stdin(io.BytesIO(b"RIFF" * 1000), Path("/dev/full"))

    class Unreadable(io.RawIOBase):
        def read(self, size=-1):
            raise OSError(5, "Input/output error")

    with pytest.raises(CodecError, match=r"stdin: cannot read it \(Input/output error\)"):
        _copy_stdin(Unreadable(), Path(os.devnull))


def test_a_full_temporary_folder_behind_stdout_is_named(monkeypatch):
    import tempfile

    from codec import pipes

    monkeypatch.setattr(pipes.sys, "stdout", io.TextIOWrapper(io.BytesIO()))
    with pytest.raises(CodecError, match=f"stdout: cannot write \\(No space left on device\\); stdout is written "
                                         f"to the temporary folder {tempfile.gettempdir()} first, and that is full"):
        with pipes.stdout_file(".wav") as path:   # as the coders report a full disk, naming their file
            raise CodecError(f"{path}: cannot write ({os.strerror(28)})")


def test_an_error_with_stdout_on_dev_null_still_exits_1(tmp_path):
    result = subprocess.run([sys.executable, "-c", "from codec.cli.main import run; run()", "info",
                             str(tmp_path / "missing.codes")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    assert result.returncode == 1 and "missing.codes" in result.stderr


def test_the_undefined_note_counts_every_file():
    from collections import Counter

    from codec.evaluation.notes import undefined_note as _undefined_note

    reasons = Counter({"silent": 8, "too short": 4, "could not align: correlation 0.01": 1,
                       "could not align: correlation 0.02": 1, "could not align: correlation 0.03": 1})
    note = _undefined_note("PESQ-WB", reasons, 24)
    assert note.startswith("PESQ-WB undefined in 15 of 24 scores (files x rows): 8 x silent; 4 x too short; "
                           "1 x could not")
    assert note.endswith("; 2 x other reasons (in results.json)")
    assert "other" not in _undefined_note("PESQ-WB", Counter({"silent": 2}), 3)


def test_the_undefined_notes_name_every_metric_a_file_could_not_be_scored_on():
    from types import SimpleNamespace

    from codec.evaluation.notes import undefined_notes

    short = {m: "shorter than 0.25 s" for m in ("pesq_wb", "stoi", "si_sdr", "mel_distance")}
    rows = [SimpleNamespace(undefined=short), SimpleNamespace(undefined={}),
            SimpleNamespace(undefined={"pesq_wb": "PESQ found no utterances (silence)",
                                       **{m: f"{name} undefined for an all-zero reference" for m, name in
                                          (("stoi", "STOI"), ("si_sdr", "SI-SDR"), ("mel_distance", "mel distance"))}}),
            SimpleNamespace(undefined={"stoi": "odd"})]
    assert undefined_notes(rows) == [
        "PESQ-WB, STOI, SI-SDR and mel distance undefined in 1 of 4 scores (files x rows): 1 x shorter than 0.25 s",
        "PESQ-WB undefined in 1 of 4 scores (files x rows): 1 x PESQ found no utterances (silence)",
        "STOI, SI-SDR and mel distance undefined in 1 of 4 scores (files x rows): 1 x an all-zero reference",
        "STOI undefined in 1 of 4 scores (files x rows): 1 x odd"]



def test_format_ogg_and_aiff_reach_stdout_and_aif_names_aiff(tiny_model_dir, tmp_path):
    codes = tmp_path / "s.codes"
    mono = write_audio(tmp_path / "mono.wav", tone(0.5, 16000), 16000)
    assert invoke("encode", mono, codes, "--model", tiny_model_dir).exit_code == 0
    for name, major in [("ogg", "OGG"), ("aiff", "AIFF")]:
        result = subprocess.run([sys.executable, "-c", "from codec.cli.main import run; run()", "decode",
                                 str(codes), "-", "--format", name, "--model", str(tiny_model_dir)],
                                capture_output=True)
        assert result.returncode == 0, result.stderr
        decoded = sf.info(io.BytesIO(result.stdout))
        assert decoded.format == major and decoded.frames == 8000
    result = invoke("decode", codes, tmp_path / "out.aif", "--format", "aiff", "--model", tiny_model_dir)
    assert result.exit_code == 0 and sf.info(str(tmp_path / "out.aif")).format == "AIFF"


def test_stdout_errors_name_format_options_not_suffixes(tiny_model_dir, tmp_path):
    """stdout has no suffix to change: "write .wav" said what only --format can do there."""
    codes = tmp_path / "s.codes"
    mono = write_audio(tmp_path / "mono.wav", tone(0.5, 16000), 16000)
    assert invoke("encode", mono, codes, "--model", tiny_model_dir).exit_code == 0
    result = subprocess.run([sys.executable, "-c", "from codec.cli.main import run; run()", "decode", str(codes),
                             "-", "--format", "flac", "--channels", "10", "--model", str(tiny_model_dir)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "stdout: FLAC holds at most 8 channels, not 10; use --format wav" in \
        result.stderr, result.stderr
    for name, sample_format, message in [
            ("flac", "float", "stdout: FLAC holds integer samples only (pcm16 or pcm24); use --format wav or --format "
                              "aiff for float"),
            ("ogg", "pcm16", "stdout: OGG Vorbis is lossy and has no sample format to choose; use --format wav, flac "
                             "or aiff, or leave --sample-format out")]:
        result = invoke("decode", codes, "-", "--format", name, "--sample-format", sample_format, "--model",
                        tiny_model_dir)
        assert result.exit_code == 1 and message in " ".join(result.output.split()), result.output


@pytest.mark.long
@pytest.mark.skipif(not os.path.exists("/dev/stdout"), reason="needs /dev/stdout")
def test_an_output_named_by_a_file_descriptor_is_refused_and_the_file_kept(tiny_model_dir, tmp_path):
    """/dev/stdout --force wrote beside the shell's file and renamed over it: ``>> log`` lost the log."""
    source = write_audio(tmp_path / "in.wav", tone(0.3, 16000), 16000)
    log = tmp_path / "log.bin"
    log.write_bytes(b"IMPORTANT LOG LINE\n")
    (tmp_path / "fd").symlink_to("/dev/stdout")
    (tmp_path / "fds").symlink_to("/proc/self/fd")   # a link to the folder of descriptors
    for output in ("/dev/stdout", "/proc/self/fd/1", "//dev/fd/1", tmp_path / "fd", tmp_path / "fds" / "1"):
        with open(log, "ab") as appended:
            result = subprocess.run([sys.executable, "-c", "from codec.cli.main import run; run()", "encode", source,
                                     output, "--force", "--model", tiny_model_dir],
                                    stdout=appended, stderr=subprocess.PIPE, text=True)
        assert result.returncode == 1 and "names an open file by its file descriptor" in result.stderr \
            and "give - for stdout" in result.stderr, result.stderr
        assert log.read_bytes() == b"IMPORTANT LOG LINE\n"
    # another path through /proc is a path like any other
    result = invoke("encode", source, f"/proc/self/root{tmp_path}/through-proc.codes",
                    "--model", tiny_model_dir)
    assert result.exit_code == 0 and (tmp_path / "through-proc.codes").is_file(), result.output


def test_an_internal_errors_message_is_cut_to_a_readable_length():
    from codec.errors import internal_error_message

    short = internal_error_message(TypeError("bad argument"))
    assert short == "internal error: TypeError: bad argument (set CODEC_DEBUG=1 for the traceback)"
    long = internal_error_message(TypeError("graph(" + "x" * 100_000 + ")"))   # as the ONNX exporter's can be
    assert len(long) < 700 and "(99507 characters more)" in long and long.endswith("for the traceback)")
    import struct

    with pytest.raises(struct.error) as caught:
        struct.pack("<H", 70000)
    assert internal_error_message(caught.value).startswith("internal error: struct.error: ")   # not "error: "
    import shutil

    assert internal_error_message(shutil.Error("x")).startswith("internal error: shutil.Error: x")


def test_memory_that_runs_out_is_said_so_not_called_a_bug():
    import torch

    from codec.errors import internal_error_message

    with pytest.raises(RuntimeError) as caught:   # PyTorch's allocator raises a RuntimeError, not a MemoryError
        torch.empty(1 << 50, dtype=torch.uint8)
    for error in (MemoryError("Unable to allocate 14.6 GiB for an array"), caught.value):
        message = internal_error_message(error)
        assert message.startswith("out of memory (") and "internal error" not in message, message
        assert message.endswith("code fewer or shorter files (or fewer output channels) at a time")
    assert internal_error_message(MemoryError()).startswith("out of memory: close other programs")


def test_help_paragraphs_wrap_at_the_terminals_width_not_the_sources(monkeypatch):
    # (typer kept the docstring's line breaks: at 80 columns, "-o" ended one line and its value began a short next one)
    monkeypatch.setenv("COLUMNS", "200")
    result = invoke("train", "--help")
    assert result.exit_code == 0
    assert "codec train esc_16k_small_finetune -o data.train_dir=my_audio/ fine-tunes the default model" in \
        result.output
