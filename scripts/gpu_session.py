"""One timed training session on a borrowed GPU machine: several training runs side by side, each
with a wall-clock budget, and each run's learning-rate decay sized from the speed it measured.

A lease is short (minutes) and the speed of a run on an unfamiliar GPU is unknown in advance, so a
step-count schedule cannot be written beforehand. Each job therefore runs in two phases of its
recipe (``codec train``): phase 1 trains at the recipe's learning rate (after its warm-up) for
``constant_minutes``; phase 2 resumes from phase 1's checkpoint with an exponential decay to
``lr / decay_factor`` over exactly the steps that ``decay_minutes`` allow at phase 1's measured
steps/s (``train.log``). A job may start ``after`` another: it then trains on that job's final
codec (the entropy model must see its codec's codes).

The training audio is decoded once (e.g. ../shared/data/speech/train_opus24, which is small enough
to carry) to 16-bit WAV at 16 kHz, which every job reads. Every minute, and at the end, each job's
``model/`` folder and logs are packed into ``OUT/session.tar`` split into parts of at most 15 MB
(``OUT/session.tar.part-0``, ``-1``...): what a lease brings back is limited in file size, and a
stopped lease still returns the last pack. Unpack with ``cat session.tar.part-* | tar x``. The
exit status is 1 if a job failed (or was not started because the one it comes after failed).

Usage (on the GPU machine, from the repository root):
    python3 scripts/gpu_session.py scripts/gpu_session.yaml --out "$OUT"
"""

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

from script_errors import run_main  # first: a Ctrl-C while torch loads is one line

# isort: split
import soundfile as sf
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codec.atomic import write_atomically  # noqa: E402
from codec.audio import load_audio, resample  # noqa: E402
from codec.datasets import find_inputs  # noqa: E402

PART_BYTES = 15_000_000


@dataclass
class Job:
    name: str
    recipe: str
    constant_minutes: float
    decay_minutes: float
    decay_factor: float = 20.0
    after: str | None = None          # another job whose final codec this one trains on
    overrides: list[str] = field(default_factory=list)
    out_dir: Path = Path()
    process: subprocess.Popen | None = None
    phase: int = 0                    # 1, 2: running that phase; 3: finished
    failed: bool = False


def _convert(task: tuple[Path, Path, int]) -> None:
    source, target, rate = task
    audio, source_rate = load_audio(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, resample(audio.mean(axis=1), source_rate, rate), rate, subtype="PCM_16")


def prepare_audio(source: Path, target: Path, rate: int = 16000) -> Path:
    """Decode every file under ``source`` once to 16-bit WAV at ``rate`` under ``target``."""
    files = find_inputs(source)
    root = source if source.is_dir() else source.parent
    tasks = [(path, target / path.relative_to(root).with_suffix(".wav"), rate) for path in files]
    with ProcessPoolExecutor(max(1, (os.cpu_count() or 2) - 2)) as pool:
        list(pool.map(_convert, tasks, chunksize=16))
    return target


def _last_speed(out_dir: Path) -> float | None:
    """Median steps/s of the last three logged intervals of a run (None if it logged none)."""
    log = out_dir / "train.log"
    lines = log.read_text().splitlines() if log.is_file() else []
    rates = [record["steps_per_s"] for record in map(json.loads, lines) if "steps_per_s" in record][-3:]
    return sorted(rates)[len(rates) // 2] if rates else None


def _checkpoint(out_dir: Path) -> tuple[int, int]:
    """The step of a run's checkpoint and its recipe's warm-up steps."""
    import torch

    state = torch.load(out_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    return int(state["step"]), int(state["recipe"]["optim"]["warmup_steps"])


def _start(job: Job, extra: list[str], threads: int) -> None:
    command = [sys.executable, "-m", "codec.train", job.recipe, "-o", f"run.out_dir={job.out_dir}",
               "-o", "run.tensorboard=false", "-o", "run.checkpoint_minutes=1", "-o", f"run.threads={threads}",
               *[arg for override in job.overrides + extra for arg in ("-o", override)]]
    if job.phase == 2:
        command.append("--resume")
    job.out_dir.mkdir(parents=True, exist_ok=True)
    with open(job.out_dir / f"phase{job.phase}.out", "w") as log:   # the child keeps its own handle
        job.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    print(f"[{time.strftime('%H:%M:%S')}] {job.name} phase {job.phase}: {' '.join(command[3:])}", flush=True)


def _next_phase(job: Job, common: list[str], threads: int, minutes_left: float) -> None:
    """Start the job's next phase (or mark it finished after phase 2).

    Phase 2's decay starts where phase 1 stopped (or where the warm-up ends, if later: the
    trainer decays only after it) and spans the steps that fit in ``decay_minutes``, or in the
    time left before the session's deadline if that is shorter."""
    if job.phase == 1:
        speed = _last_speed(job.out_dir)
        if speed is None or not (job.out_dir / "checkpoint.pt").is_file():
            print(f"{job.name}: phase 1 left no speed or checkpoint; no decay phase", flush=True)
            job.phase, job.process, job.failed = 3, None, True
            return
        step, warmup = _checkpoint(job.out_dir)
        start = max(step, warmup)
        minutes = min(job.decay_minutes, minutes_left - 0.5)   # start-up and the checkpoint at the end
        steps = max(1, int(speed * 60 * minutes) - (start - step))
        decay = job.decay_factor ** (-1 / steps)
        print(f"{job.name}: phase 1 ended at step {step}, {speed:.2f} steps/s -> decay over steps {start}-"
              f"{start + steps} (x{decay:.6f} per step)", flush=True)
        job.phase = 2
        _start(job, common + [f"optim.decay_start={start}", f"optim.lr_decay={decay}",
                              f"run.max_steps={start + steps}", f"run.max_minutes={minutes * 1.2 + 0.3}"], threads)
    else:
        job.phase = 3
        job.process = None


_PACK_LOCK = threading.Lock()


def pack(jobs: list[Job], out: Path) -> None:
    """Each job's model folder and logs as OUT/session.tar.part-N (parts of at most 15 MB).

    Each file is read once (the trainers replace model files atomically, so a read sees a whole
    file); a part replaces its predecessor by a rename, so a stopped session leaves whole parts."""
    with _PACK_LOCK:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for job in jobs:
                for path in sorted(job.out_dir.glob("model/*")) + sorted(job.out_dir.glob("*.log")) \
                        + sorted(job.out_dir.glob("phase*.out")):
                    try:
                        data = path.read_bytes()
                    except OSError:   # replaced between the listing and the read: the next pack has it
                        continue
                    info = tarfile.TarInfo(str(path.relative_to(job.out_dir.parent)))
                    info.size, info.mtime = len(data), int(time.time())
                    tar.addfile(info, io.BytesIO(data))
        data = buffer.getvalue()
        out.mkdir(parents=True, exist_ok=True)
        count = 0
        for count, start in enumerate(range(0, len(data), PART_BYTES), 1):
            chunk = data[start:start + PART_BYTES]
            write_atomically(out / f"session.tar.part-{count - 1:03d}", lambda tmp, chunk=chunk: tmp.write_bytes(chunk))
        for old in out.glob("session.tar.part-*"):
            if int(old.name.rsplit("-", 1)[1]) >= count:
                old.unlink()


def _stop(jobs: list[Job], grace_seconds: float = 90) -> None:
    """SIGTERM every running phase (each saves a checkpoint), then kill what outlives the grace."""
    running = [job.process for job in jobs if job.process is not None and job.process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    for process in running:
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()


def _step(jobs: list[Job], by_name: dict[str, Job], common: list[str], threads: int, deadline: float) -> None:
    """Start, advance or retire each job once."""
    for job in jobs:
        if job.phase == 0 and job.after and by_name[job.after].failed:
            print(f"{job.name}: not started ({job.after} failed)", flush=True)
            job.phase, job.failed = 3, True
        elif job.phase == 0 and (job.after is None or by_name[job.after].phase == 3):
            if job.after:
                job.overrides.append(f"data.codec_model={by_name[job.after].out_dir / 'model'}")
            job.phase = 1
            _start(job, common + [f"run.max_minutes={job.constant_minutes}"], threads)
        elif job.process is not None and job.process.poll() is not None:
            if job.process.returncode != 0:
                print(f"{job.name} phase {job.phase} failed (exit {job.process.returncode}); "
                      f"see {job.out_dir}/phase{job.phase}.out", flush=True)
                print((job.out_dir / f"phase{job.phase}.out").read_text()[-3000:], flush=True)
                job.phase, job.process, job.failed = 3, None, True
            else:
                _next_phase(job, common, threads, (deadline - time.monotonic()) / 60)


def read_plan(path: Path) -> tuple[dict, list[Job]]:
    """The plan in the YAML file ``path`` and its jobs; raises SystemExit with one line naming the
    file and what is wrong (see scripts/gpu_session.yaml for a plan)."""
    try:
        plan = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise SystemExit(f"error: {path}: not valid YAML ({str(error).splitlines()[0]})") from None
    keys = plan if isinstance(plan, dict) else {}
    missing = [key for key in ("audio", "deadline_minutes", "jobs") if key not in keys]
    if missing:
        raise SystemExit(f"error: {path}: the plan needs {', '.join(missing)} (see scripts/gpu_session.yaml)")
    deadline = plan["deadline_minutes"]
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or not 0 < deadline < 24 * 60:
        raise SystemExit(f"error: {path}: deadline_minutes={deadline!r}; give minutes from 0 to 1440")
    if not isinstance(plan["jobs"], list) or not all(isinstance(spec, dict) for spec in plan["jobs"]):
        raise SystemExit(f"error: {path}: jobs must be a list of jobs, each with name, recipe, constant_minutes "
                         f"and decay_minutes")
    given = {f.name for f in fields(Job) if f.name not in ("out_dir", "process", "phase", "failed")}
    jobs = []
    for number, spec in enumerate(plan["jobs"], 1):
        try:
            if unknown := sorted(set(spec) - given):
                raise TypeError(f"unknown key {', '.join(map(str, unknown))} (known: {', '.join(sorted(given))})")
            jobs.append(Job(**spec))
        except TypeError as error:   # a key missing or unknown
            reason = str(error).removeprefix("Job.__init__() ").removeprefix("Job.")
            raise SystemExit(f"error: {path}: job {number} ({spec.get('name', 'unnamed')}): {reason}") from None
    names = {job.name for job in jobs}
    if unknown := [job.after for job in jobs if job.after and job.after not in names]:
        raise SystemExit(f"error: {path}: 'after' names no job: {', '.join(unknown)}")
    return plan, jobs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plan", type=Path, help="YAML: audio, runs_dir, device, threads, deadline_minutes, jobs")
    parser.add_argument("--out", type=Path, required=True, help="folder for the packed results")
    args = parser.parse_args()
    if earlier := sorted(args.out.glob("session.tar.part-*")):   # another session's results: not replaced
        raise SystemExit(f"error: {args.out} holds the packed results of an earlier session ({earlier[0].name}, ...); "
                         f"move them or give another --out")
    plan, jobs = read_plan(args.plan)
    deadline = time.monotonic() + 60 * plan["deadline_minutes"]
    runs = Path(plan.get("runs_dir", "runs/gpu"))
    threads = int(plan.get("threads", 4))
    by_name = {job.name: job for job in jobs}
    for job in jobs:
        job.out_dir = runs / job.name
    t0 = time.monotonic()
    audio = prepare_audio(Path(plan["audio"]), runs / "audio16k")
    print(f"audio decoded to {audio} in {time.monotonic() - t0:.0f} s", flush=True)
    common = [f"data.train_dir={audio}", f"run.device={plan.get('device', 'cuda')}"]

    stop = threading.Event()

    def keep_packing() -> None:
        while not stop.wait(60):
            try:
                pack(jobs, args.out)
            except OSError as error:   # a full disk, say: the next pack tries again
                print(f"pack failed: {error}", flush=True)

    packer = threading.Thread(target=keep_packing, daemon=True)
    packer.start()
    try:
        while any(job.phase < 3 for job in jobs):
            _step(jobs, by_name, common, threads, deadline)
            if time.monotonic() > deadline:
                print("deadline: stopping every run (each saves a checkpoint)", flush=True)
                break
            time.sleep(1)
    finally:   # also on an error of this script: no run outlives it, and what they saved is packed
        _stop(jobs)
        stop.set()
        packer.join()
        pack(jobs, args.out)
    for job in jobs:
        log = job.out_dir / "train.log"
        last = log.read_text().splitlines()[-1] if log.exists() else "no log"
        print(f"{job.name}: {last}", flush=True)
    failed = [job.name for job in jobs if job.failed]
    if failed:   # (what the others trained is packed all the same)
        print(f"failed or not started: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    run_main(main)
