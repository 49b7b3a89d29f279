"""scripts/gpu_session.py, the timed multi-run GPU session, run on the CPU with the tiny recipe."""

import io
import json
import subprocess
import sys
import tarfile

import yaml

from tests.conftest import REPO, tone, write_audio


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
        assert "stopped at step" in (runs / name / "phase2.out").read_text()
        log = [json.loads(line) for line in (runs / name / "train.log").read_text().splitlines()]
        assert log[-1]["step"] > 2
    # phase 2 read the decoded audio (not the recipe's data folder) and decayed the learning rate
    assert "0.00 h of audio" in (runs / "codec" / "phase2.out").read_text()
    codec_log = [json.loads(line) for line in (runs / "codec" / "train.log").read_text().splitlines()]
    assert codec_log[-1]["lr"] < 0.5 * max(record["lr"] for record in codec_log)
    assert sorted(p.name for p in (runs / "audio16k" / "a").iterdir()) == ["0.wav", "1.wav", "2.wav"]
    packed = b"".join(p.read_bytes() for p in sorted(out.glob("session.tar.part-*")))
    names = tarfile.open(fileobj=io.BytesIO(packed)).getnames()
    assert {"codec/model/model.safetensors", "entropy/model/entropy.safetensors", "codec/train.log"} <= set(names)
