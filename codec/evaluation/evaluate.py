"""Run an evaluation: code every file with every system, align, score, and aggregate.

Each file is scored on its first channel, at 16 kHz (other rates are resampled for scoring).
Files are spread over ``jobs`` worker processes; each worker loads the model once and runs torch
on ``threads`` threads, the count the real-time factors are measured with.
"""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from codec.audio import checked_peak, load_audio_and_announced
from codec.errors import CodecError
from codec.evaluation.alignment import align
from codec.evaluation.metrics import METRIC_RATE, MIN_SECONDS, score_pair, to_metric_rate
from codec.evaluation.stats import ci95_half_width
from codec.evaluation.systems import BaselineFailed, OurCodec, System, baseline_systems
from codec.refine import check_refine_steps
from codec.signals import starting_workers, terminate_workers

METRICS = ("pesq_wb", "pesq_nb", "stoi", "si_sdr", "mel_distance")
MAX_LAG_SECONDS = 0.1
WARM_UP_SECONDS = 2


@dataclass
class EvalSettings:
    model: str | None
    bitrates_kbps: list[float]
    baselines: list[str] = field(default_factory=list)
    pesq_nb: bool = False
    threads: int = 1
    entropy: bool = False          # also evaluate the model with its entropy coding
    refine_steps: int = 0          # > 0: also the model with latent refinement (codec/refine.py)
    int8: bool = False             # also the model computing in int8 (codec/int8.py)
    jobs: int = 1                  # worker processes: the real-time factors are measured with them all busy


@dataclass
class FileResult:
    path: str
    system: str                 # "ours" is the model's name; baselines by codec name
    setting: str
    nominal_kbps: float
    measured_kbps: float | None  # all bits written / duration (ours: header included); None: no samples
    overhead_kbps: float | None  # header or container bits / duration
    duration_s: float
    sample_rate: int
    lag_samples_16k: int        # the output lagged the input by this many samples at 16 kHz; removed before scoring
    encode_rtf: float | None    # coding seconds / duration; None for a file with no samples
    decode_rtf: float | None
    scores: dict[str, float | None]
    undefined: dict[str, str]   # metric -> why it is undefined
    channels: int = 1           # the file's; only the first is coded and scored
    limited_samples: int = 0    # of that channel, beyond ±1.0 (float files): limited for every system
    missing_samples: int = 0    # announced by the header but not in the file (one cut short)


@dataclass
class Summary:
    """One system at one bitrate: scores are means over files; kbps and real-time factors are
    over all the audio (each file weighted by its duration: total bits / total seconds)."""
    system: str
    setting: str
    nominal_kbps: float
    files: int
    measured_kbps: float | None     # None where no file had samples
    overhead_kbps: float | None
    encode_rtf: float | None
    decode_rtf: float | None
    mean: dict[str, float | None]
    ci95: dict[str, float | None]  # half-width of the 95% confidence interval of the mean
    undefined: dict[str, int]      # metric -> files where it was undefined


# --- worker side ---------------------------------------------------------------------------
_systems: list[System] = []


def _init_worker(settings: EvalSettings, systems: list[System] | None = None) -> None:
    global _systems
    torch.set_num_threads(settings.threads)
    _systems = build_systems(settings)[0] if systems is None else systems
    # throwaway noise through each kind of system (its first bitrate), so that first-call costs (lazy
    # imports, kernel set-up: about 2 s with refinement) count in no file's real-time factor; 2 s, as the
    # transformer's time attention takes another path from 64 frames (1.28 s) on, whose first call
    # doubled the first file's encoding time after a warm-up of 1 s
    noise = 0.01 * np.random.default_rng(0).standard_normal(WARM_UP_SECONDS * METRIC_RATE).astype(np.float32)
    for system in {system.name: system for system in reversed(_systems)}.values():
        try:
            system.code(noise, METRIC_RATE)
        except BaselineFailed:   # (each file it fails on is noted)
            pass


def build_systems(settings: EvalSettings) -> tuple[list[System], list[str]]:
    """Our model at each bitrate, then the baselines; and notes on skipped baselines."""
    from codec.models import load_model

    model = load_model(settings.model)
    for kbps in settings.bitrates_kbps:
        try:
            model.codebooks_for_bitrate(kbps)
        except ValueError as error:
            raise CodecError(f"--bitrates: {error}") from None
    ours = [OurCodec(model.config.name, kbps, f"{model.codebooks_for_bitrate(kbps)} codebooks", model)
            for kbps in settings.bitrates_kbps]
    if settings.entropy:
        from codec.coding import entropy_coder_for

        coder = entropy_coder_for(model, required=True, command="evaluate")
        ours += [OurCodec(f"{model.config.name}+entropy", kbps,
                          f"{model.codebooks_for_bitrate(kbps)} codebooks, entropy-coded", model, coder)
                 for kbps in settings.bitrates_kbps]
    check_refine_steps(settings.refine_steps, model)
    if settings.refine_steps:
        refined = f"{model.config.name}+refined"
        steps = f"{settings.refine_steps} refinement step{'s' if settings.refine_steps > 1 else ''}"
        ours += [OurCodec(refined, kbps, f"{model.codebooks_for_bitrate(kbps)} codebooks, {steps}",
                          model, refine_steps=settings.refine_steps)
                 for kbps in settings.bitrates_kbps]
        if settings.entropy:   # refined codes may cost more bits once range-coded: measured, not assumed
            ours += [OurCodec(f"{refined}+entropy", kbps, f"{model.codebooks_for_bitrate(kbps)} codebooks, "
                              f"{steps}, entropy-coded", model, coder,
                              refine_steps=settings.refine_steps)
                     for kbps in settings.bitrates_kbps]
    if settings.int8:
        int8_model = load_model(settings.model, int8=True)
        ours += [OurCodec(f"{model.config.name}+int8", kbps, f"{model.codebooks_for_bitrate(kbps)} codebooks, int8",
                          int8_model)
                 for kbps in settings.bitrates_kbps]
        if settings.entropy:
            ours += [OurCodec(f"{model.config.name}+int8+entropy", kbps,
                              f"{model.codebooks_for_bitrate(kbps)} codebooks, int8, entropy-coded", int8_model, coder)
                     for kbps in settings.bitrates_kbps]
    try:
        baselines, notes = baseline_systems(settings.baselines, settings.bitrates_kbps)
    except ValueError as error:
        raise CodecError(f"--baselines: {error}") from None
    return ours + baselines, notes


def evaluate_file(path: Path, settings: EvalSettings, keep_audio: bool = False):
    """All systems on one file: ``(list[FileResult], (reference [T], {system label: decoded [T]}),
    failures)``, signals at 16 kHz. A baseline whose program fails on the file is left out of its
    row: ``failures`` holds ``(row label, reason)`` for each.

    Raises:
        CodecError: if the file cannot be read (or our model fails on it).
    """
    audio, sample_rate, announced = load_audio_and_announced(path)
    signal = audio[:, 0]
    peak = checked_peak(signal, path)   # integer-scale floats: left out, as codec encode refuses them
    limited = int(np.count_nonzero(np.abs(signal) > 1.0)) if peak > 1.0 else 0
    if limited:   # every system codes, and is scored against, what a file of audio can hold
        signal = np.clip(signal, -1.0, 1.0)
    # a constant offset is not sound (the codecs drop it, as Opus's high-pass does) but it moves
    # PESQ's level alignment and STOI's silent-frame choice: every signal is scored without it
    reference = to_metric_rate(_without_offset(signal), sample_rate)   # (before resampling: no edge transient)
    duration = len(signal) / sample_rate
    results, decoded_signals, failures = [], {}, []
    for system in _systems:
        try:
            coded = system.code(signal, sample_rate)
        except BaselineFailed as error:
            failures.append((f"{system.name} {system.nominal_kbps:g} kbps", str(error)))
            continue
        degraded = to_metric_rate(_without_offset(coded.audio), coded.sample_rate)
        alignment = align(reference, degraded, 0 if system.time_aligned else int(MAX_LAG_SECONDS * METRIC_RATE))
        # a file too short to score gets that reason (score_pair's), not a failed alignment's
        if alignment.problem and len(reference) >= MIN_SECONDS * METRIC_RATE:
            scores = {m: None for m in METRICS if m != "pesq_nb" or settings.pesq_nb}
            undefined = {m: alignment.problem for m in scores}
        else:
            pair = score_pair(reference, alignment.degraded, settings.pesq_nb)
            scores = {m: s.value for m, s in pair.items()}
            undefined = {m: s.reason for m, s in pair.items() if s.value is None}
            if undefined and np.any(signal):   # all zero only once scored without its DC offset: a constant
                undefined = {m: why.replace("an all-zero reference", "an all-zero reference (the input is a "
                                            "constant, its DC offset, which scoring removes)")
                             for m, why in undefined.items()}
        results.append(FileResult(
            str(path), system.name, system.setting, system.nominal_kbps,
            _per_second(coded.payload_bits / 1000, duration), _per_second(coded.overhead_bits / 1000, duration),
            duration, sample_rate, alignment.lag, _per_second(coded.encode_seconds, duration),
            _per_second(coded.decode_seconds, duration), scores, undefined, audio.shape[1], limited,
            max(announced - len(signal), 0)))
        if keep_audio:
            decoded_signals[f"{system.name} {system.nominal_kbps:g} kbps"] = alignment.degraded
    return results, (reference, decoded_signals), failures


def _without_offset(signal: np.ndarray) -> np.ndarray:
    """``signal [T]`` less its mean (its DC offset)."""
    return signal - signal.mean() if len(signal) else signal


_start_problem: str | None = None   # in a pool worker: why it could not start


def _init_pool_worker(settings: EvalSettings) -> None:
    """A pool worker's ``_init_worker``: what stops it is kept for each of its files' results (raised
    here, it would break the pool as a worker's death does, and name no cause)."""
    global _start_problem
    try:
        _init_worker(settings)
    except Exception as error:
        _start_problem = f"the worker process could not start: {error}" if isinstance(error, CodecError) else \
            f"the worker process could not start: {type(error).__name__}: {error}"


def _worker(job: tuple[Path, EvalSettings, bool]):
    """``evaluate_file``'s output, or ``(None, reason, [])`` for a file that cannot be read."""
    if _start_problem:
        return None, f"{job[0]}: {_start_problem}", []
    try:
        return evaluate_file(*job)
    except CodecError as error:
        return None, str(error), []


EXAMPLE_CANDIDATES = 8   # files whose decoded audio comes back for the spectrogram plot (the first scored)


def run_evaluation(files: list[Path], settings: EvalSettings, on_file=None, on_start=None):
    """Evaluate all files, in ``settings.jobs`` worker processes; returns ``(results, notes,
    example)`` where ``example`` is ``(path, reference, decoded)`` for the first file our model's
    PESQ-WB could be scored on (for the spectrogram plot; else the first that could be read).

    ``on_start`` is called once the settings are checked and ``on_file`` after each file (progress
    reporting). A file that cannot be read is left out with a note naming it (``example`` is None
    if none of the first ``EXAMPLE_CANDIDATES`` files could be).

    Raises:
        CodecError: for a bad model, bitrate or baseline name, or if no file could be read.
        EvaluationInterrupted: on Ctrl-C (a KeyboardInterrupt), saying how far it got.
    """
    systems, notes = build_systems(settings)  # fail early on a bad model, bitrate or baseline name
    if on_start:
        on_start()
    jobs_list = [(path, settings, index < EXAMPLE_CANDIDATES) for index, path in enumerate(files)]
    results, example, failures, done = [], None, [], 0
    readable_example, baseline_failures = None, {}
    if settings.jobs <= 1:
        _init_worker(settings, systems)
        scored = ((job, _worker(job)) for job in jobs_list)
    else:
        scored = _in_workers(jobs_list, settings, notes, failures)
    try:
        for (path, _, keep_audio), (file_results, audio, file_failures) in scored:
            if file_results is None:
                failures.append(audio)
            else:
                results += file_results
                for row, reason in file_failures:
                    baseline_failures.setdefault(row, []).append((path, reason))
                if keep_audio and example is None:
                    readable_example = readable_example or (path, *audio)
                    if file_results and file_results[0].scores.get("pesq_wb") is not None:
                        example = (path, *audio)
            done += 1
            if on_file:
                on_file()
    except KeyboardInterrupt as error:
        if type(error) is KeyboardInterrupt:   # Ctrl-C (SIGTERM's Terminated keeps its own exit code)
            raise EvaluationInterrupted(done, len(files)) from None
        raise
    finally:
        scored.close()   # an error or SIGTERM here: the workers stop now, not after their files
    if not results:
        raise CodecError(f"no file could be evaluated: {'; '.join(failures[:3])}")
    notes += [f"{row}: its program failed on {len(cases)} file(s), left out of the row; first: {cases[0][0]}: "
              f"{cases[0][1]}" for row, cases in baseline_failures.items()]
    return results, notes + [f"left out {reason}" for reason in failures], example or readable_example


def _in_workers(jobs_list: list, settings: EvalSettings, notes: list[str], failures: list[str]):
    """``(job, _worker's output)`` in the files' order, from ``settings.jobs`` spawned workers. A
    worker that dies (out of memory, killed) breaks its pool; the first file not yet scored is then
    scored alone in a worker of its own, and the rest go on in a new pool. A file whose own worker
    dies too is left out (added to ``failures``): a file that kills every worker costs no other."""
    while jobs_list:
        given = yield from _in_one_pool(jobs_list, min(settings.jobs, len(jobs_list)), settings)
        if given is None:
            return
        if not any(note.startswith(WORKER_DIED) for note in notes):
            notes.append(f"{WORKER_DIED}; the files not yet scored were given to new workers")
        first, jobs_list = jobs_list[given], jobs_list[given + 1:]
        if (yield from _in_one_pool([first], 1, settings)) is not None:
            failures.append(f"{first[0]}: its worker process died while scoring it, alone too (out of memory? "
                            f"killed?)")


WORKER_DIED = "a worker process died (out of memory? killed?) while scoring"


def _in_one_pool(jobs_list: list, workers: int, settings: EvalSettings):
    """``_in_workers``'s part for one pool of ``workers``; returns None once every file is given,
    or, if a worker died, how many were given (the files that came back before it)."""
    pool, given = None, 0
    try:
        with starting_workers():   # the pool starts the resource tracker, map's submits the workers
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_pool_worker, initargs=(settings,))
            outputs = pool.map(_worker, jobs_list)
        for job, output in zip(jobs_list, outputs, strict=True):
            yield job, output
            given += 1
        return None
    except BrokenProcessPool:   # (map gives the files in order: those from ``given`` on did not come back)
        return given
    except BaseException:   # Ctrl-C, SIGTERM or an error here: the workers stop now, not after the files
        if pool:
            terminate_workers(pool)
        raise
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)


class EvaluationInterrupted(KeyboardInterrupt):
    """Ctrl-C during an evaluation, after ``done`` of ``total`` files (nothing is written)."""

    def __init__(self, done: int, total: int):
        super().__init__(f"interrupted after {done} of {total} files; no results were written")
        self.done, self.total = done, total


def summarize(results: list[FileResult]) -> list[Summary]:
    """Mean and 95% confidence interval per system and bitrate; undefined values are counted."""
    groups: dict[tuple, list[FileResult]] = {}
    for result in results:
        groups.setdefault((result.system, result.setting, result.nominal_kbps), []).append(result)
    summaries = []
    for (system, setting, kbps), rows in groups.items():
        mean, ci95, undefined = {}, {}, {}
        for metric in rows[0].scores:
            values = np.array([r.scores[metric] for r in rows if r.scores[metric] is not None], dtype=float)
            values = values[np.isfinite(values)]
            undefined[metric] = len(rows) - len(values)
            mean[metric] = float(values.mean()) if len(values) else None
            ci95[metric] = ci95_half_width(values) if len(values) > 1 else None
        summaries.append(Summary(
            system, setting, kbps, len(rows),
            *(_over_the_audio(rows, field) for field in ("measured_kbps", "overhead_kbps", "encode_rtf", "decode_rtf")),
            mean, ci95, undefined))
    return sorted(summaries, key=lambda s: (s.system not in our_names(results), s.system, s.nominal_kbps))


def _per_second(amount: float, seconds: float) -> float | None:
    """``amount`` per second of a file's audio; None for a file with no samples (it has no rate)."""
    return amount / seconds if seconds else None


def _over_the_audio(rows: list[FileResult], field: str) -> float | None:
    """A rate over all the rows' audio (each weighted by its duration); None where no file had samples."""
    timed = [r for r in rows if r.duration_s]
    seconds = sum(r.duration_s for r in timed)
    return sum(getattr(r, field) * r.duration_s for r in timed) / seconds if timed else None


def our_names(results: list[FileResult]) -> set[str]:
    return {r.system for r in results if "codebooks" in r.setting}  # ours first in tables


def as_dict(results: list[FileResult], summaries: list[Summary]) -> dict:
    return {"summary": [asdict(s) for s in summaries], "files": [asdict(r) for r in results]}
