"""The README's Python examples run as written (with the shipped model)."""

import re

import pytest

from tests.conftest import REPO


def test_python_examples_run(tmp_path, monkeypatch):
    """In a folder holding the talk.wav they read (stereo at 22.05 kHz, as the tour's)."""
    from tests.conftest import tone, write_audio

    monkeypatch.chdir(tmp_path)
    write_audio(tmp_path / "talk.wav", tone(1.0, 22050, channels=2), 22050)
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def _tour_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Tour\n\n.*?```bash\n(.*?)```", readme, flags=re.S).group(1)
    return [line.split(" # ")[0].strip() for line in block.splitlines() if line.strip()]


def _adapted(command: str, folder, small_dev, train_audio) -> str:
    """A tour command made small enough for the test suite: training stops after a step or two
    in a temporary run folder, the evaluation reads two dev-like files, and refinement takes 2
    steps (the same code path; 60 took 25 s)."""
    command = command.replace("recipes/", f"{REPO}/recipes/").replace("../shared/data/speech/dev", str(small_dev))
    command = re.sub(r"--refine-steps \d+", "--refine-steps 2", command)
    if " train " in f" {command} " or "-m codec.train" in command:
        resume = "--resume" in command
        recipe = re.search(r"recipes/(\w+)\.yaml", command) or re.search(r" train (\w+)", command)   # or a name
        run = folder / ("run-" + recipe.group(1)
                        + ("-ddp" if command.startswith("torchrun") else ""))   # --resume shares its run
        command += (f" -o run.out_dir={run} -o run.max_steps={2 if resume else 1} -o data.train_dir={train_audio}"
                    f" -o run.tensorboard=false")
        if "entropy" in command:
            command += f" -o data.dev_dir={small_dev}"
    return command


@pytest.mark.long
def test_tour_commands_run(tmp_path):
    """Every command of the README's tour runs as written (the microphone aside), in order."""
    import os
    import shutil
    import subprocess
    import sys

    from tests.conftest import tone, write_audio

    if not shutil.which("ffmpeg") or not shutil.which("c2enc"):
        pytest.skip("the tour's eval line needs ffmpeg and codec2 (installed by .ci/run)")
    write_audio(tmp_path / "talk.wav", tone(1.0, 22050, channels=2), 22050)
    for name in ("a/one.wav", "a/b/two.flac"):
        (tmp_path / "recordings" / name).parent.mkdir(parents=True, exist_ok=True)
        write_audio(tmp_path / "recordings" / name, tone(0.6, 16000, 180.0), 16000)
    small_dev, train_audio = tmp_path / "dev", tmp_path / "train"
    for folder, count in ((small_dev, 2), (train_audio, 3)):
        folder.mkdir()
        for i in range(count):
            write_audio(folder / f"{i}.wav", tone(1.2, 16000, 150.0 + 40 * i), 16000)
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1"}
    commands = _tour_commands()
    assert len(commands) > 15
    for command in commands:
        command = _adapted(command, tmp_path, small_dev, train_audio)
        if command.startswith("torchrun"):
            command = command.replace("--nproc_per_node 2", "--nproc_per_node 1")  # one process: same code path
        result = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{command}\n{result.stderr[-2000:]}"
    assert (tmp_path / "heard.wav").is_file() and (tmp_path / "decoded" / "a" / "b" / "two.flac").is_file()


@pytest.mark.long
def test_main_command_runs_as_written(tmp_path):
    """The README's first command (after setup.sh) encodes and decodes its dev file with the shipped
    model into a decoded file as long as its input (the file is real speech beside the checkout),
    and runs again."""
    import os
    import subprocess
    import sys

    import soundfile as sf

    readme = (REPO / "README.md").read_text()
    command = re.search(r"```bash\n(.*?)\n```", readme, flags=re.S).group(1)
    assert command.startswith("bash scripts/setup.sh && "), command
    command = command.removeprefix("bash scripts/setup.sh && ").replace(".venv/bin/", "")
    inputs = re.findall(r"encode (\S+)", command)
    assert inputs, command
    if not (REPO / inputs[0]).is_file():
        pytest.skip(f"the README's input {inputs[0]} is missing (real speech in ../shared/data, see its README)")
    command = command.replace(f"encode {inputs[0]} ", f"encode {REPO / inputs[0]} ")   # (run in tmp_path)
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1"}
    for _ in range(2):   # and again, as setup.sh can be: over its own outputs
        result = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
    decoded, original = sf.info(tmp_path / "speech_out.wav"), sf.info(REPO / inputs[0])
    assert (decoded.frames, decoded.samplerate) == (original.frames, original.samplerate)


@pytest.mark.parametrize("module_name", ["codec", "codec.api"])
def test_docstring_examples_run(module_name, tmp_path, monkeypatch):
    """The example that ``help(codec)`` and ``help(codec.api)`` open with runs as written, in a
    folder holding its talk.wav, with ``audio`` the array it starts from."""
    import importlib
    import textwrap

    from tests.conftest import tone, write_audio

    monkeypatch.chdir(tmp_path)
    write_audio(tmp_path / "talk.wav", tone(1.0, 44100), 44100)
    docstring = importlib.import_module(module_name).__doc__
    example = textwrap.dedent(re.search(r"\n\n(    import codec\n(?:    .*\n|\n)*)", docstring).group(1))
    exec(compile(example, f"{module_name} docstring", "exec"), {"audio": tone(1.0, 44100)})
    assert (tmp_path / "talk_out.wav").is_file()
