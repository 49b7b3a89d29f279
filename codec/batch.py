"""Coding many files at once: ``codec encode in/ out/`` and ``codec decode 'out/**/*.codes' wav/``.

Inputs are a folder (searched recursively), a glob pattern (``**`` matches any depth), or a list
of files; each output goes to the same place under the output folder as its input under the
input folder (``in/a/b/x.flac -> out/a/b/x.codes``). Outputs that already exist are skipped
unless ``force``. Files are coded by ``codec.coding`` one by one, in worker processes that load
each model once; one bad file is reported with its reason and never stops the others.
"""

import contextlib
import glob
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from codec.atomic import remove_partials
from codec.audio import AUDIO_SUFFIXES, LOSSY_SUFFIXES
from codec.datasets import Skipped, visible_files
from codec.errors import CodecError, ModelNotFoundError, internal_error_message, out_of_memory
from codec.signals import starting_workers, terminate_workers
from codec.threads import torch_threads

CODES_SUFFIX = ".codes"
# --format's names, each with the suffixes a file of that format may have (the first: a batch's)
OUTPUT_FORMATS = {"wav": (".wav",), "flac": (".flac",), "ogg": (".ogg", ".oga"), "aiff": (".aiff", ".aif")}


@dataclass(frozen=True)
class Job:
    """One file to code: ``source`` -> ``target``."""

    source: Path
    target: Path


@dataclass(frozen=True)
class BatchSettings:
    """What to do with every file (picklable, sent to the workers)."""

    command: str                     # "encode" or "decode"
    model: str | None = None         # name or directory; None: the default (decode: the file's)
    bitrate_kbps: float = 6.0
    entropy: bool | None = False    # encode: None uses the model's entropy model where it has one
    force: bool = False
    sample_rate: int | None = None   # decode: output rate in Hz (None: the original's)
    channels: int | None = None      # decode: output channels (None: the original's)
    sample_format: str | None = None  # decode: "pcm16", "pcm24" or "float" (None: codec.coding.output_subtype's)
    refine_steps: int = 0            # encode: latent refinement steps (codec/refine.py; 0 = off)
    int8: bool = False               # the model's linear layers in int8 (codec/int8.py)
    threads: int = 1                 # torch threads per process (each worker's, and this one's)


@dataclass
class Outcome:
    """What happened to one job."""

    job: Job
    status: str                      # "coded", "skipped" or "failed"
    reason: str = ""                 # why it failed, one line
    seconds: float = 0.0             # duration of the audio coded
    bytes: int = 0                   # size of the file written
    warnings: list[str] = field(default_factory=list)


# --- which files ---------------------------------------------------------------------------
def is_batch(inputs: list[str]) -> bool:
    """Several inputs, a folder, or a glob pattern (not an existing file) mean a batch."""
    if len(inputs) != 1:
        return len(inputs) > 1
    text = inputs[0]
    path = Path(text)
    if text == "-" or path.is_file():
        return False
    if path.is_dir():
        return True
    # '*' or '?' is a pattern; brackets alone only if they match something ('take[1].wav' is a name)
    return "*" in text or "?" in text or (glob.has_magic(text) and bool(glob.glob(text, recursive=True)))


def _pattern_root(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard: ``in/**/*.flac`` -> ``in``."""
    parts = Path(pattern).parts
    fixed = [p for p in parts[:next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))]]
    return Path(*fixed) if fixed else Path(".")


def _glob(pattern: str) -> list[Path]:
    """The paths ``pattern`` matches, as a shell's globstar does: ``**`` spans any depth of folders
    but does not follow a symbolic link to one (Python's glob does, and a link back to a parent
    made it match one file at every depth, or, with two such links, run for ever); names that start
    with a dot only where the pattern's own part does."""
    if "**" not in pattern:
        return [Path(path) for path in glob.glob(pattern)]
    root = _pattern_root(pattern)
    rest = Path(pattern).relative_to(root) if root != Path(".") else Path(pattern)
    dotted = any(part.startswith(".") for part in rest.parts)
    return [path for path in root.glob(str(rest))
            if dotted or not any(part.startswith(".") for part in path.relative_to(root).parts)]


def find_files(inputs: list[str], suffixes: tuple[str, ...],
               recognise: tuple[str, Callable[[Path], bool]] | None = None,
               skipped: Skipped | None = None) -> list[tuple[Path, Path]]:
    """The input files, each with the path its output takes below the output folder (suffix not
    yet changed), in order.

    A folder gives its files with ``suffixes`` at any depth (hidden ones left out), a glob pattern
    its matches with ``suffixes``; with ``recognise`` (a kind's name and a test of a file's
    content), the files it accepts whatever their name as well; anything else is a file, as given
    (missing ones fail later, each on its own). One folder or pattern: its files keep their tree
    below it. Several inputs (as ``cp -r`` does): a folder's files go below the folder's name, a
    pattern's keep their tree below the pattern's fixed part, and plain files (a pattern the shell
    expanded) keep their tree below their common folder. With ``skipped``, the files of folders and
    patterns that were left out (another suffix, hidden) are listed there, for a note.

    Raises:
        CodecError: naming the folder or pattern, if it holds no such file.
    """
    plain = [text for text in inputs if not _is_expanded(text)]
    common = Path(os.path.commonpath([os.path.abspath(Path(t).parent) for t in plain])) if plain else None
    placed: dict[Path, Path] = {}
    spelt: set[str] = set()   # a file named twice (a.wav and sub/../a.wav) is coded once, not failed as a clash
    for text in inputs:
        if not _is_expanded(text):
            if os.path.abspath(text) not in spelt:
                spelt.add(os.path.abspath(text))
                placed.setdefault(Path(text), Path(os.path.abspath(text)).relative_to(common))
            continue
        files, root = _expand(text, suffixes, recognise, skipped)
        below = Path(Path(os.path.abspath(text)).name) if len(inputs) > 1 and Path(text).is_dir() else Path()
        for file in files:
            placed.setdefault(file, below / file.relative_to(root))
    return list(placed.items())


def _is_expanded(text: str) -> bool:
    """A folder, or a glob pattern that is not an existing file."""
    return Path(text).is_dir() or (not Path(text).is_file() and is_batch([text]))


def _expand(text: str, suffixes: tuple[str, ...], recognise: tuple[str, Callable[[Path], bool]] | None,
            skipped: Skipped | None = None) -> tuple[list[Path], Path]:
    """A folder's or a pattern's files with ``suffixes`` (or that ``recognise`` accepts), sorted,
    and the folder they lie below; the other files go to ``skipped`` (if given)."""
    kinds = ", ".join(suffixes) + (f" (or {recognise[0]})" if recognise else "")

    def wanted(path: Path) -> bool:
        if not path.is_file():   # a link to a missing file, or a pipe, is listed, to fail with that reason, not vanish
            dangling_or_special = not path.is_dir() and (path.is_symlink() or path.exists())
            return dangling_or_special and path.suffix.lower() in suffixes
        if path.suffix.lower() in suffixes:
            return True
        try:
            return recognise is not None and recognise[1](path)
        except OSError:   # unreadable: not recognised (a file named for the batch still fails on its own)
            return False

    if Path(text).is_dir():
        root = Path(text)
        found = visible_files(root, None if skipped is None else skipped.hidden)
    else:
        root = _pattern_root(text)
        found = []
        for path in _glob(text):   # a folder matched: its files, as the shell's
            found += visible_files(path, None if skipped is None else skipped.hidden) if path.is_dir() else [path]
        found = list(dict.fromkeys(found))   # (in/** matches a folder and its files both)
    files = [path for path in found if wanted(path)]
    if not files:   # what was found instead, when looking for audio (.m4a files: how to convert them)
        others = Skipped(not_audio=found).summary() if suffixes == AUDIO_SUFFIXES and found else None
        note = f"; {others}" if others else ""
        raise CodecError(f"{text}: no files ending in {kinds} in this folder or below{note}" if Path(text).is_dir()
                         else f"{text}: the pattern matches no files ending in {kinds}{note}")
    if skipped is not None:
        skipped.not_audio += sorted(set(found) - set(files))
    return sorted(files), root


def outside_the_output(placed: list[tuple[Path, Path]], inputs: list[str],
                       out_dir: Path) -> tuple[list[tuple[Path, Path]], int]:
    """``placed`` (``find_files``'s) without the files a folder input gave from below ``out_dir``,
    where ``out_dir`` lies inside that folder (``codec encode rec/ rec/codes/``): earlier runs'
    outputs, which coded again nest one level deeper at each run. Returns them and how many were
    left out. An output folder that is the input folder itself (coding in place) leaves out none,
    nor files given by name."""
    out = resolved_path(out_dir)
    folders = [resolved_path(Path(text)) for text in inputs if Path(text).is_dir()]
    if not any(out != folder and out.is_relative_to(folder) for folder in folders):
        return placed, 0
    named = {Path(text) for text in inputs}
    kept = [(file, place) for file, place in placed if file in named or not resolved_path(file).is_relative_to(out)]
    return kept, len(placed) - len(kept)


def plan_jobs(placed: list[tuple[Path, Path]], out_dir: Path, suffix: str) -> tuple[list[Job], list[Outcome]]:
    """Jobs coding each ``(file, place)`` of ``find_files`` into ``out_dir / place`` with ``suffix``,
    and failed outcomes for files whose output another file already takes (``x.wav`` and ``x.flac``
    -> ``x.codes``) or would replace an input (``codec decode sd sd``: ``x.codes`` -> ``x.wav``, a
    saved packet stream that is an input too)."""
    jobs, clashes, taken = [], [], {}
    inputs = {resolved_path(source): source for source, _ in placed}
    # of files that share an output, the lossless one is coded (x.wav, not x.mp3), and the .codes file
    # (x.codes, not a saved stream x.pkt); others as found
    placed = sorted(placed, key=lambda item: _precedence(item[0]))
    # the same files by another route (a bind mount or hard link of the input folder)
    inputs_by_inode = {key: source for source, _ in placed if (key := file_identity(source)) is not None}
    for source, place in placed:
        job = Job(source, out_dir / place.with_suffix(suffix))
        replaced = inputs.get(resolved_path(job.target)) or inputs_by_inode.get(file_identity(job.target))
        if replaced is not None:
            clashes.append(Outcome(job, "failed", f"{source}: its output {job.target} would replace the input "
                                                  f"{replaced}; give another output folder"))
            continue
        if job.target in taken:
            first = taken[job.target]
            clashes.append(Outcome(job, "failed", f"{source}: its output {job.target} is also the output of "
                                                  f"{first}, which goes first ({_why_first(first, source)}); "
                                                  f"rename one of them"))
            continue
        if _beside_its_codes(job, suffix):
            clashes.append(Outcome(job, "failed", f"{source}: its output {job.target} is an audio file beside it, "
                                                  f"most likely the recording it was encoded from; decoding in "
                                                  f"place never replaces one, even with --force: give another "
                                                  f"output folder"))
            continue
        taken[job.target] = source
        jobs.append(job)
    return jobs, clashes


def _precedence(path: Path) -> tuple[bool, bool]:
    """Sort key of files that may share an output: lossless audio and .codes files first."""
    return path.suffix.lower() in LOSSY_SUFFIXES, path.suffix.lower() != CODES_SUFFIX


def _why_first(first: Path, second: Path) -> str:
    """Why ``first`` was coded and ``second``, with the same output, was not (``_precedence``)."""
    if _precedence(first)[0] != _precedence(second)[0]:
        return "lossless files before lossy ones"
    if _precedence(first)[1] != _precedence(second)[1]:
        return f"{CODES_SUFFIX} files before saved streams"
    return "it was found first"


def _beside_its_codes(job: Job, suffix: str) -> bool:
    """Whether decoding ``job`` would replace an audio file in its codes' own folder (``codec encode
    rec/ rec/`` puts ``talk.codes`` beside ``talk.wav``; ``codec decode rec/ rec/ --force`` would
    put a lossy copy over the recording)."""
    return (suffix.lower() in AUDIO_SUFFIXES and job.target.is_file()
            and resolved_path(job.target.parent) == resolved_path(job.source.parent))


def file_identity(path: Path) -> tuple[int, int] | None:
    """The device and inode of an existing file or folder, None for one that is not there."""
    try:
        found = path.stat()
    except (OSError, ValueError):
        return None
    return found.st_dev, found.st_ino


def resolved_path(path: Path) -> Path:
    """``path`` with its links resolved; as it is where they loop."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):   # a loop of links: it is no input's path
        return path


def check_output_folder(inputs: list[str], out_dir: Path, suffixes: tuple[str, ...], command: str = "code") -> None:
    """The output of a batch (``command``: encode or decode) must be a folder (created if missing),
    not a file.

    Raises:
        CodecError: if ``out_dir`` is a file or is named like one (``out.codes``).
    """
    if out_dir.is_file() or (not out_dir.exists() and out_dir.suffix.lower() in suffixes):
        if len(inputs) == 1 and Path(inputs[0]).is_dir():
            raise CodecError(f"{inputs[0]}: is a directory; to {command} the files in it, give an output "
                             f"folder instead of {out_dir}")
        given = "a glob pattern" if len(inputs) == 1 else "several inputs"   # (however many files it matches)
        raise CodecError(f"{out_dir}: {given} need{'s' if len(inputs) == 1 else ''} an output folder, not a "
                         f"file name")


# --- coding one file (in a worker) ---------------------------------------------------------
_models: dict = {}


def load_cached(name: str | Path | None, int8: bool = False):
    """A model by name or directory (None: the default), loaded once per process (``int8`` as in
    ``load_model``).

    Raises:
        CodecError: as ``load_model``.
    """
    from codec.models import load_model

    key = (str(name) if name is not None else None, int8)
    if key not in _models:
        _models[key] = load_model(name, int8)
    return _models[key]


# A batch's claims: one flag per job, shared by this process and the workers; whoever sets a job's
# flag first codes it. The main process takes jobs from the back that no worker has started (its
# model is loaded, and a spawned worker takes a second or two to import torch and load it), and a
# worker finds such a job taken and returns at once. (Cancelling a queued future instead made
# Python 3.11's pool raise InvalidStateError, with a traceback, when a worker died.)
UNCLAIMED, BY_WORKER, BY_MAIN = 0, 1, 2
_claims = None   # in a worker: the batch's flags


def _init_worker(claims, threads: int = 1) -> None:
    """Worker start: ``threads`` torch threads (one by default: the workers are the parallelism);
    SIGTERM removes the worker's temporary file as it does the main process's."""
    import torch

    from codec.signals import stop_on_termination

    global _claims
    _claims = claims
    torch.set_num_threads(threads)
    stop_on_termination(worker=True)
    _stop_with_parent()


def _stop_with_parent() -> None:
    """Have Linux send this worker SIGTERM when the main process dies (SIGKILL, out of memory):
    it would otherwise wait for jobs forever. Elsewhere the worker stays as it was."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:   # it died before the request: none would come
        # (exit as SIGTERM would, quietly: raised inside the pool's initializer, it printed a traceback;
        # a worker that has not started a job has no temporary file to remove)
        os._exit(128 + signal.SIGTERM)


def _claim(claims, index: int, who: int) -> bool:
    with claims.get_lock():
        if claims[index] != UNCLAIMED:
            return False
        claims[index] = who
        return True


def code_claimed(index: int, job: Job, settings: BatchSettings) -> Outcome | None:
    """In a worker: code job ``index`` unless the main process claimed it first (then None)."""
    if not _claim(_claims, index, BY_WORKER):
        return None
    try:
        return code_file(job, settings)
    except SystemExit as stop:   # SIGTERM (a stopped batch): its file is cleaned up; take no other job
        os._exit(stop.code if isinstance(stop.code, int) else 1)


def code_file(job: Job, settings: BatchSettings) -> Outcome:
    """Encode or decode one file; every problem becomes a failed outcome with a one-line reason."""
    try:
        _make_folder(job.target.parent)
        if settings.command == "encode":
            return _encode(job, settings)
        return _decode(job, settings)
    except ModelNotFoundError as error:  # batches come from encode and decode, which take --model
        return Outcome(job, "failed", error.for_model_option())
    except CodecError as error:
        return Outcome(job, "failed", str(error))
    except OSError as error:
        return Outcome(job, "failed", f"{error.filename or job.source}: {error.strerror or error}")
    except Exception as error:  # a bug (or memory that ran out), not the file's fault: report it and go on
        problem = internal_error_message(error) if out_of_memory(error) else \
            f"internal error: {type(error).__name__}: {error}"
        return Outcome(job, "failed", f"{job.source}: {problem}")


def _make_folder(folder: Path) -> None:
    """Create ``folder`` and its parents. Raises CodecError naming a file that stands where one of them goes."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise CodecError(f"{blocking}: is a file, where the output needs a folder of that name") from None


def _encode(job: Job, settings: BatchSettings) -> Outcome:
    from codec.coding import encode_file

    model = load_cached(settings.model, settings.int8)
    _, report = encode_file(model, job.source, job.target, settings.bitrate_kbps, settings.force,
                            settings.entropy, settings.refine_steps)
    return _coded(job, settings, report.warnings)


def _decode(job: Job, settings: BatchSettings) -> Outcome:
    from codec.coding import decode_any_file

    report = decode_any_file(job.source, job.target, settings.force, settings.model, settings.sample_rate,
                             settings.channels, load=lambda name: load_cached(name, settings.int8),
                             sample_format=settings.sample_format)
    return _coded(job, settings, report.warnings)


def _coded(job: Job, settings: BatchSettings, warnings: list[str] | None = None) -> Outcome:
    """The outcome of a job whose output is written: its duration and size, from the file."""
    if settings.command == "encode":
        from codec.codes_files import read_codes_metadata

        meta = read_codes_metadata(job.target)
        seconds = meta.samples / meta.sample_rate
    else:
        import soundfile as sf

        info = sf.info(os.fsencode(job.target))
        seconds = info.frames / info.samplerate
    return Outcome(job, "coded", seconds=seconds, bytes=job.target.stat().st_size, warnings=warnings or [])


# --- running a batch -----------------------------------------------------------------------
def already_done(job: Job, settings: BatchSettings) -> bool:
    """Whether the batch skips ``job``: its output is a file, kept without ``--force`` (a folder or
    pipe there fails, named)."""
    return job.target.is_file() and not settings.force


def run_batch(jobs: list[Job], settings: BatchSettings, workers: int = 1,
              on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Code every job; outputs that exist are skipped unless ``settings.force``. Stopped (Ctrl-C,
    SIGTERM), the KeyboardInterrupt it raises says how many files were coded.

    ``workers`` > 1 codes in that many processes: this one and ``workers - 1`` spawned ones
    (``settings.threads`` torch threads and one copy of each model per process); 1 codes in this
    process alone.
    ``on_done`` is called with each outcome as it arrives (progress). Returns the outcomes in the
    order of ``jobs``.
    """
    on_done = on_done or (lambda outcome: None)
    outcomes: dict[Job, Outcome] = {}
    todo = []
    for job in jobs:
        if already_done(job, settings):
            outcomes[job] = Outcome(job, "skipped")
            on_done(outcomes[job])
        else:
            todo.append(job)
    new_folders = _missing_folders(todo)
    started = time.time()
    try:
        for outcome in _run(todo, settings, workers):
            outcomes[outcome.job] = outcome
            on_done(outcome)
    except KeyboardInterrupt as error:   # Ctrl-C or SIGTERM (Terminated, its type kept for the exit code)
        error.args = (f"{str(error) or 'interrupted'} {_how_far(todo, started, settings)}",)
        raise
    finally:   # (once no worker codes any more: one may still have written into a folder)
        _remove_empty(new_folders)
    return [outcomes[job] for job in jobs]


def _how_far(todo: list[Job], started: float, settings: BatchSettings) -> str:
    """How far a stopped batch got: its outputs written since ``started`` (``time.time()``), which
    are whole (written through a temporary file), counted on disk, as a worker's may not have been
    reported yet."""
    def written(job: Job) -> bool:
        try:   # (a second's slack for file systems with coarse times)
            return job.target.is_file() and job.target.stat().st_mtime >= started - 1.0
        except OSError:
            return False

    done, verb = sum(map(written, todo)), f"{settings.command}d"
    counted = f"after {done} of the {len(todo)} file{'s' if len(todo) > 1 else ''} to {settings.command} " \
              f"{'was' if len(todo) == 1 else 'were'} {verb}"
    if settings.force:   # the rest may be stale outputs that --force was to redo: no advice
        return f"{counted}, each whole"
    return f"{counted}; the same command again {settings.command}s the rest (outputs that exist are kept)"


def _missing_folders(jobs: list[Job]) -> list[Path]:
    """The output folders of ``jobs`` that do not exist yet, and their parents that do not, deepest first."""
    missing = set()
    for job in jobs:
        for folder in (job.target.parent, *job.target.parent.parents):
            if folder in missing or folder.exists():
                break
            missing.add(folder)
    return sorted(missing, key=lambda folder: len(folder.parts), reverse=True)


def _remove_empty(folders: list[Path]) -> None:
    """Remove those of ``folders`` (deepest first) that the batch created and left empty: the output
    folders of files that all failed."""
    for folder in folders:
        with contextlib.suppress(OSError):   # not empty (or not there): kept
            folder.rmdir()


def _run(jobs: list[Job], settings: BatchSettings, workers: int, task: Callable = code_claimed) -> Iterator[Outcome]:
    """Outcomes as they finish, with ``workers`` > 1 in a pool of ``workers - 1`` spawned
    processes and this one (see ``_claims``). A worker that dies (out of memory, killed) breaks
    its pool: the jobs that no one had started go on in a new pool, and each job that was being
    coded in a worker then is tried once more, as the pool stops all its workers when one dies;
    a job during which workers died twice fails. ``task``: what a worker runs per job."""
    with torch_threads(settings.threads):
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                yield code_file(job, settings)
            return
        broke: dict[Job, int] = {}
        while jobs:
            jobs = yield from _run_pool(jobs, settings, workers, task, broke)


def _run_pool(jobs: list[Job], settings: BatchSettings, workers: int, task: Callable,
              broke: dict[Job, int]):
    """One pool's part of ``_run``; returns the jobs to go on with if the pool broke."""
    context = multiprocessing.get_context("spawn")
    with starting_workers():   # the claims' lock starts the resource tracker, the first submit the workers
        claims = context.Array("b", len(jobs))
        pool = ProcessPoolExecutor(max(1, min(workers, len(jobs)) - 1), mp_context=context, initializer=_init_worker,
                                   initargs=(claims, settings.threads))
    again = []
    try:
        with starting_workers():
            pending = {pool.submit(task, index, job, settings): index for index, job in enumerate(jobs)}
        back = len(jobs) - 1
        while pending:
            # (not a job whose worker died: if the file killed it, it would kill this process too)
            while back >= 0 and (claims[back] != UNCLAIMED or jobs[back] in broke):
                back -= 1
            if back >= 0:   # this process codes the last job no worker has started
                if _claim(claims, back, BY_MAIN):
                    yield code_file(jobs[back], settings)
                done = [future for future in pending if future.done()]
            else:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index = pending.pop(future)
                outcome = _result(future, jobs[index], claims[index], broke, settings)
                if isinstance(outcome, Outcome):
                    yield outcome
                elif outcome == "again":
                    again.append(jobs[index])
    except BaseException:   # an error, Ctrl-C or SIGTERM here: the workers stop too, not after their files
        terminate_workers(pool)   # SIGTERM: each removes its temporary file and exits (code_claimed)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return again


def _result(future, job: Job, claim: int, broke: dict[Job, int], settings: BatchSettings) -> Outcome | str | None:
    """A worker's outcome; None for a job this process coded; "again" for one to go on with after
    its worker, or another in the pool, died."""
    try:
        return future.result()
    except BrokenProcessPool as error:   # a worker process died (out of memory, killed)
        if claim == BY_MAIN:
            return None
        if claim == UNCLAIMED:
            return "again"
        remove_partials(job.target)   # what a worker killed while writing left
        if already_done(job, settings):   # written (renamed whole) before its worker died
            try:
                return _coded(job, settings)
            except (CodecError, OSError, RuntimeError):   # (not this batch's: code it again, which fails, named)
                pass
        broke[job] = broke.get(job, 0) + 1
        if broke[job] < 2:
            return "again"
        return Outcome(job, "failed", f"{job.source}: the worker process coding it died, twice (out of memory? "
                                      f"killed?): {error}")
    except Exception as error:  # (pickling, or a bug)
        return Outcome(job, "failed", f"{job.source}: worker process failed ({type(error).__name__}: {error})")


# --- the summary ---------------------------------------------------------------------------
def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d} ({seconds / 3600:.3f} h)"


def summary_lines(outcomes: list[Outcome], command: str) -> list[str]:
    """Warnings, one line per failure (with its reason), then the totals: files coded, already
    done (their output exists; "kept" for decode, as that may be a recording) and failed, hours
    of audio, bytes written and (encode) the mean bitrate of the files written."""
    coded = [o for o in outcomes if o.status == "coded"]
    done_paths = [str(o.job.target) for o in outcomes if o.status == "skipped"]
    done = len(done_paths)
    failed = [o for o in outcomes if o.status == "failed"]
    lines = [f"warning: {w}" for o in coded for w in o.warnings]
    lines += [f"failed: {_with_path(o.reason, o.job.source)}" for o in failed]
    seconds, written = sum(o.seconds for o in coded), sum(o.bytes for o in coded)
    verb = "encoded" if command == "encode" else "decoded"
    totals = f"{verb} {len(coded)} file{'' if len(coded) == 1 else 's'}, "
    if done:   # which ones: --force would replace them ("skipped" is the notes' word for inputs left out)
        listed = ", ".join(done_paths[:3]) + (f" and {done - 3} more" if done > 3 else "")
        if command == "encode":
            totals += f"{done} already done (output exists; --force redoes {'it' if done == 1 else 'them'}), "
            lines.append(f"already done: {listed}")
        else:   # an audio file there may be the recording the codes came from, which --force would not redo
            totals += (f"{done} kept (output exists: an earlier decode, or a recording of that name, which "
                       f"--force would replace), ")
            lines.append(f"kept: {listed}")
    totals += f"failed {len(failed)}; {_duration(seconds)} of audio, {written:,} bytes written"
    if command == "encode" and seconds > 0:
        totals += f", {written * 8 / seconds / 1000:.2f} kbps mean"
    return lines + [totals]


def _with_path(reason: str, source: Path) -> str:
    return reason if str(source) in reason else f"{source}: {reason}"

