"""scripts/gpu_session.py, the timed multi-run GPU session, run on the CPU with the tiny recipe."""

import io
import json
import os
import re
import subprocess
import sys
import sysconfig
import tarfile

import pytest
import yaml

from tests.conftest import REPO, tone, write_audio


@pytest.mark.long
def test_two_phase_runs_with_a_dependent_entropy_job(tmp_path):
    audio = tmp_path / "opus"
    (audio / "a").mkdir(parents=True)
    for i in range(3):
        write_audio(audio / "a" / f"{i}.wav", tone(1.5, 22050, 200 + 100 * i), 22050)   # decoded to 16 kHz first
    plan = {"audio": str(audio), "runs_dir": str(tmp_path / "runs"), "device": "cpu", "threads": 1,
            "deadline_minutes": 4,
            "jobs": [{"name": "codec", "recipe": "recipes/tiny.yaml", "constant_minutes": 0.05, "decay_minutes": 0.05,
                      "overrides": ["run.log_every=2", "run.max_steps=100000"]},
                     {"name": "entropy", "recipe": "recipes/entropy_conv_16k.yaml", "after": "codec",
                      "constant_minutes": 0.05, "decay_minutes": 0.05,
                      "overrides": ["entropy.codec=tiny-16k", "entropy.dim=32", "entropy.layers=1", "entropy.heads=2",
                                    "entropy.depth_hidden=32", "data.segment_frames=16", "data.dev_dir=null",
                                    "run.log_every=2", "run.batch_size=2"]}]}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "scripts/gpu_session.py", str(tmp_path / "plan.yaml"), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "failed" not in done.stdout, done.stdout
    runs = tmp_path / "runs"
    for name in ("codec", "entropy"):
        assert re.search(r"(finished|stopped) at step", (runs / name / "phase2.out").read_text())
        log = [json.loads(line) for line in (runs / name / "train.log").read_text().splitlines()]
        assert log[-1]["step"] > 2
    # phase 2 read the decoded audio (not the recipe's data folder) and decayed the learning rate
    assert re.search(r" \d+\.\d+ s of\s+audio", (runs / "codec" / "phase2.out").read_text())   # seconds, not hours
    codec_log = [json.loads(line) for line in (runs / "codec" / "train.log").read_text().splitlines()]
    assert codec_log[-1]["lr"] < 0.5 * max(record["lr"] for record in codec_log)
    assert sorted(p.name for p in (runs / "audio16k" / "a").iterdir()) == ["0.wav", "1.wav", "2.wav"]
    packed = b"".join(p.read_bytes() for p in sorted(out.glob("session.tar.part-*")))
    names = tarfile.open(fileobj=io.BytesIO(packed)).getnames()
    assert {"codec/model/model.safetensors", "entropy/model/entropy.safetensors", "codec/train.log"} <= set(names)


def _driver():
    import importlib.util

    if str(REPO / "scripts") not in sys.path:   # where the script finds script_errors when it runs
        sys.path.insert(0, str(REPO / "scripts"))
    spec = importlib.util.spec_from_file_location("gpu_session", REPO / "scripts" / "gpu_session.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_failed_job_skips_its_dependants_and_the_session_still_packs(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    write_audio(audio / "a.wav", tone(0.5, 16000), 16000)
    plan = {"audio": str(audio), "runs_dir": str(tmp_path / "runs"), "device": "cpu", "threads": 1,
            "deadline_minutes": 2,
            "jobs": [{"name": "broken", "recipe": "recipes/no_such.yaml", "constant_minutes": 0.1,
                      "decay_minutes": 0.1},
                     {"name": "later", "recipe": "recipes/entropy_conv_16k.yaml", "after": "broken",
                      "constant_minutes": 0.1, "decay_minutes": 0.1}]}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    done = subprocess.run([sys.executable, "scripts/gpu_session.py", str(tmp_path / "plan.yaml"), "--out",
                           str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "broken phase 1 failed" in done.stdout and "later: not started (broken failed)" in done.stdout
    assert "failed or not started: broken, later" in done.stdout
    assert (tmp_path / "out" / "session.tar.part-000").is_file()


def test_pack_replaces_its_parts(tmp_path, monkeypatch):
    driver = _driver()
    job = driver.Job(name="a", recipe="r", constant_minutes=1, decay_minutes=1, out_dir=tmp_path / "runs" / "a")
    (job.out_dir / "model").mkdir(parents=True)
    monkeypatch.setattr(driver, "PART_BYTES", 1000)
    (job.out_dir / "model" / "w.bin").write_bytes(b"x" * 5000)
    driver.pack([job], tmp_path / "out")
    assert len(list((tmp_path / "out").glob("session.tar.part-*"))) >= 6
    (job.out_dir / "model" / "w.bin").write_bytes(b"y" * 10)
    driver.pack([job], tmp_path / "out")
    parts = sorted((tmp_path / "out").glob("session.tar.part-*"))   # in order as the shell lists them
    data = b"".join(p.read_bytes() for p in parts)
    tar = tarfile.open(fileobj=io.BytesIO(data))
    assert tar.extractfile("a/model/w.bin").read() == b"y" * 10   # no stale part left behind
    assert not list((tmp_path / "out").glob(".*"))   # no temporary file left


def test_the_decay_starts_after_the_warm_up(tmp_path, monkeypatch):
    """A phase 1 that ends inside the warm-up: phase 2's decay starts when the warm-up ends and
    still ends on time."""
    driver = _driver()
    job = driver.Job(name="a", recipe="r", constant_minutes=1, decay_minutes=1, out_dir=tmp_path, phase=1)
    (tmp_path / "train.log").write_text('{"step": 50, "steps_per_s": 10.0}\n')
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    monkeypatch.setattr(driver, "_checkpoint", lambda out_dir: (100, 300))
    started = []
    monkeypatch.setattr(driver, "_start", lambda job, extra, threads: started.append(extra))
    driver._next_phase(job, [], 1, minutes_left=10)
    settings = dict(item.split("=") for item in started[0])
    assert settings["optim.decay_start"] == "300"
    assert settings["run.max_steps"] == str(100 + 600)   # 10 steps/s for one minute from step 100
    driver._next_phase(job := driver.Job(name="b", recipe="r", constant_minutes=1, decay_minutes=1,
                                         out_dir=tmp_path / "none", phase=1), [], 1, minutes_left=10)
    assert job.failed and job.phase == 3   # no log: no decay phase, no crash


def test_a_plan_that_is_not_one_is_a_one_line_error(tmp_path):
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / "session.tar.part-000").write_bytes(b"an earlier session's only copy")
    done = subprocess.run([sys.executable, "scripts/gpu_session.py", "scripts/gpu_session.yaml", "--out",
                           str(tmp_path / "earlier")], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 1 and "earlier holds the packed results of an earlier session" in done.stderr
    assert (tmp_path / "earlier" / "session.tar.part-000").read_bytes() == b"an earlier session's only copy"
    for text, message in [("{}", "the plan needs audio, deadline_minutes, jobs"), ("a: [", "not valid YAML"),
                          (None, "No such file or directory")]:
        plan = tmp_path / "plan.yaml"
        plan.unlink(missing_ok=True)
        if text is not None:
            plan.write_text(text)
        done = subprocess.run([sys.executable, "scripts/gpu_session.py", str(plan), "--out", str(tmp_path / "o")],
                              cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("change,message", [
    ({"audio": None}, "the plan needs audio"),
    ({"deadline_minutes": "abc"}, "deadline_minutes='abc'; give minutes from 0 to 1440"),
    ({"jobs": 5}, "jobs must be a list of jobs"),
    ({"jobs": [{"name": "a", "recipe": "r", "constant_minutes": 1}]}, "job 1 (a): missing 1 required positional "
                                                                       "argument: 'decay_minutes'"),
    ({"jobs": [{"name": "a", "recipe": "r", "constant_minutes": 1, "decay_minutes": 1, "lr": 3}]},
     "job 1 (a): unknown key lr (known: after, constant_minutes"),
    ({"jobs": [{"name": "a", "recipe": "r", "constant_minutes": 1, "decay_minutes": 1, "after": "b"}]},
     "'after' names no job: b"),
])
def test_a_plan_is_checked_before_anything_runs(tmp_path, change, message):
    plan = yaml.safe_load((REPO / "scripts" / "gpu_session.yaml").read_text())
    plan.update(change)
    plan = {key: value for key, value in plan.items() if value is not None}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    with pytest.raises(SystemExit, match=re.escape(message)):
        _driver().read_plan(tmp_path / "plan.yaml")
    assert len(_driver().read_plan(REPO / "scripts" / "gpu_session.yaml")[1]) >= 1   # the shipped plan reads


def test_the_driver_starts_where_only_the_libraries_are_installed(tmp_path):
    """On the GPU machine the driver runs under a plain python3, with the libraries but not this
    package installed: it puts the repository on its path itself (``-S`` leaves out site's .pth
    files, the package's editable install among them)."""
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    done = subprocess.run([sys.executable, "-S", str(REPO / "scripts" / "gpu_session.py"), "--help"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0 and "usage: gpu_session.py" in done.stdout, done.stderr
    check = subprocess.run([sys.executable, "-S", "-c", "import codec"], capture_output=True, env=env, cwd=tmp_path)
    assert check.returncode != 0   # (the condition this test stands for)

