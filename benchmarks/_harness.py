"""What every benchmark script shares: the common flags, the thread count, timers for named steps, and the JSON file
with a header that records the environment the figures came from.

    bench = Benchmark("probe_cache", __doc__, threads=1)
    parser = bench.parser(quick="10 per class, 100 test images")    # + --threads, --results, --output
    parser.add_argument("--per-class", type=int, default=100)
    args = bench.parse(parser)                                          # sets the thread count
    with bench.step("features") as step:
        ...
    print(f"{step.wall_s:.1f} s")
    bench.save("probe_cache_quick" if args.quick else "probe_cache", {"speedup": ...})

The saved file starts with ``benchmark``, ``command`` (the line that reproduces it), ``threads``, ``environment``
(python, library versions, CPU, cores, device, git commit, date, load average) and ``steps`` (every timed step:
count, wall and CPU seconds, the process's peak resident memory by its end); the script's own fields follow.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, NoReturn

# Every benchmark reads packaged or cached models only: no download, no progress bars, no tokenizer threads.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
RESULTS = BENCHMARKS / "results"
#: Distributions whose versions the header records (those installed).
LIBRARIES = ("transferkit", "torch", "numpy", "scipy", "scikit-learn", "timm", "transformers",
             "sentence-transformers", "lightning", "onnx", "onnxruntime", "peft", "optuna", "pillow", "mlxtend")
HEADER = ("benchmark", "command", "threads", "environment", "steps")


@dataclass
class Step:
    """One timed step: wall-clock and process CPU seconds, and the process's peak resident memory (MB) at its end
    (``ru_maxrss``: the high-water mark of the whole run so far, not of this step alone)."""

    name: str
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0


@dataclass
class _Totals:
    count: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0

    def add(self, step: Step) -> None:
        self.count += 1
        self.wall_s += step.wall_s
        self.cpu_s += step.cpu_s
        self.peak_rss_mb = max(self.peak_rss_mb, step.peak_rss_mb)

    def as_dict(self) -> dict[str, float]:
        return {"count": self.count, "wall_s": round(self.wall_s, 4), "cpu_s": round(self.cpu_s, 4),
                "peak_rss_mb": round(self.peak_rss_mb, 1)}


def peak_rss_mb() -> float:
    """This process's peak resident set so far, MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def rss_mb(pid: int | str = "self", children: bool = False) -> float:
    """Current resident set (VmRSS) of a process, MB; with ``children``, plus that of its direct children (uvicorn
    workers, for example). NaN where /proc cannot tell."""
    pids: list[int | str] = [pid]
    if children:
        with contextlib.suppress(OSError, ValueError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                pids += [int(p) for p in (task / "children").read_text().split()]
    total, found = 0.0, False
    for p in pids:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
                    found = True
    return total if found else float("nan")


def load_average() -> list[float] | None:
    """Load average over 1, 5 and 15 minutes (None where the system has none)."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def cpu_model() -> str:
    with contextlib.suppress(OSError, StopIteration):
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def git_state() -> dict[str, Any] | None:
    """The checkout's commit, and whether src/ or benchmarks/ differ from it (None outside a git checkout)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=20,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "uncommitted_changes": bool(changed)}


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def write_json(path: Path, document: dict[str, Any], indent: int = 2) -> None:
    """Write ``document`` to ``path`` atomically: a reader (or an interrupted run) sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(document, indent=indent, default=_json_default) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _stop(message: str) -> NoReturn:
    """A user's mistake: one line on stderr, exit status 2, no traceback."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def read_json(path: Path) -> dict[str, Any]:
    """A results file written before ({} if there is none); a damaged one stops the run (exit 2)."""
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        _stop(f"{path} cannot be read as JSON ({exc}); move it away or pass --output another file")
    if not isinstance(document, dict):
        _stop(f"{path} holds no JSON object; move it away or pass --output another file")
    return document


def choose(parser: argparse.ArgumentParser, option: str, value: str, allowed: tuple[str, ...]) -> list[str]:
    """A comma-separated option's values, each checked against ``allowed`` before any work (exit 2 otherwise)."""
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in allowed]
    if unknown or not chosen:
        parser.error(f"{option} {value!r}: {'unknown ' + ', '.join(unknown) + '; ' if unknown else ''}choose from "
                     f"{', '.join(allowed)} (comma-separated)")
    return chosen


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value}")
    return value


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers such as 0,1,2, got {text!r}") \
            from None
    if not seeds:
        raise argparse.ArgumentTypeError("expected at least one seed, such as 0,1,2")
    return seeds


class Benchmark:
    """One benchmark run: its flags, thread count, timed steps, environment and results file.

    ``threads``: the thread count when neither ``--threads`` nor ``$OMP_NUM_THREADS`` gives one (None: PyTorch's
    own default). ``device``: what the figures ran on, for the header.
    """

    def __init__(self, name: str, doc: str | None = None, *, threads: int | None = 1, device: str = "cpu") -> None:
        self.name = name
        self.doc = doc or ""
        self.default_threads = threads
        self.device = device
        self.threads: int | None = None
        self.args: argparse.Namespace | None = None
        self.steps: dict[str, _Totals] = {}
        self._load_at_start = load_average()
        self._git: dict[str, Any] | None = None

    # -- flags -----------------------------------------------------------------------------------------------------
    def parser(self, *, quick: str | None = None, seeds: int | str | None = None, seeds_help: str | None = None,
               seed: int | None = None, work: bool = False, full_doc: bool = False) -> argparse.ArgumentParser:
        """An argument parser with the common flags: ``--threads``, ``--results``, ``--output`` (alias ``--out``),
        and where given ``--quick`` (its help text), ``--seeds`` (a count when the default is a number, a list such
        as 0,1,2 when it is a string), ``--seed`` and ``--work`` (a folder kept between runs, see ``work_folder``).
        ``full_doc``: the whole docstring as the description."""
        description = self.doc.strip() if full_doc else self.doc.strip().split("\n\n")[0]
        parser = argparse.ArgumentParser(description=description, formatter_class=(
            argparse.RawDescriptionHelpFormatter if full_doc else argparse.HelpFormatter))
        default = "PyTorch's default" if self.default_threads is None else str(self.default_threads)
        parser.add_argument("--threads", type=_positive, default=None,
                            help=f"threads for PyTorch (and ONNX Runtime where used); default $OMP_NUM_THREADS, "
                                 f"else {default}")
        parser.add_argument("--results", type=Path, default=RESULTS,
                            help="folder of the results file (default benchmarks/results)")
        parser.add_argument("--output", "--out", dest="output", default=None,
                            help="results file: a bare name goes into --results, a path is used as it is "
                                 "(default: the benchmark's own name in --results)")
        if quick is not None:
            parser.add_argument("--quick", action="store_true", help=quick)
        if isinstance(seeds, str):
            parser.add_argument("--seeds", type=_seed_list, default=_seed_list(seeds),
                                help=seeds_help or f"comma-separated seeds (default {seeds})")
        elif seeds is not None:
            parser.add_argument("--seeds", type=_positive, default=seeds, help=seeds_help or f"seeds (default {seeds})")
        if seed is not None:
            parser.add_argument("--seed", type=int, default=seed, help=f"seed (default {seed})")
        if work:
            default = f"/tmp/transferkit-bench-{self.name}"
            parser.add_argument("--work", default=os.environ.get("TK_BENCH_WORK", default),
                                help="folder for models, caches and runs, kept so that a rerun reuses the models "
                                     f"(default $TK_BENCH_WORK, else {default})")
        return parser

    def parse(self, parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
        """Parse the flags, check the output file, and set the thread count (``args.threads`` holds it)."""
        args = parser.parse_args(argv)
        output = Path(args.output) if args.output else None
        if output is not None and output.is_dir():
            parser.error(f"--output {output} is a folder; give a file name such as {self.name}_run2.json")
        if args.results.exists() and not args.results.is_dir():
            parser.error(f"--results {args.results} is a file; give a folder")
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        if args.threads is None and env:
            try:
                args.threads = _positive(env)
            except argparse.ArgumentTypeError as exc:
                parser.error(f"$OMP_NUM_THREADS: {exc}; set it to the thread count or pass --threads")
        import torch

        if args.threads is None:
            args.threads = self.default_threads or torch.get_num_threads()
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # child processes and OpenMP libraries alike
        self.threads, self.args = args.threads, args
        self._git = git_state()
        return args

    def work_folder(self) -> Path:
        """``--work``/quick or ``--work``/full, created: quick runs never reuse the models of full ones."""
        args = self.args
        folder = Path(args.work) / ("quick" if getattr(args, "quick", False) else "full")
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def settings(self, *leave_out: str) -> dict[str, Any]:
        """The parsed flags as saved (``leave_out``: those that say nothing about the figures, such as a folder)."""
        return {k: v for k, v in vars(self.args).items() if k not in leave_out}

    # -- timing ----------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[Step]:
        """Time a named step; the header's ``steps`` adds up every step of the same name."""
        step = Step(name)
        start, start_cpu = time.perf_counter(), time.process_time()
        try:
            yield step
        finally:
            step.cpu_s = time.process_time() - start_cpu
            step.wall_s = time.perf_counter() - start
            step.peak_rss_mb = peak_rss_mb()
            self.steps.setdefault(name, _Totals()).add(step)

    # -- header and file -------------------------------------------------------------------------------------------
    @property
    def command(self) -> str:
        """The command line that reproduces this run, from the repository root."""
        def short(path: str | Path) -> str:
            try:
                return str(Path(path).absolute().relative_to(ROOT))
            except ValueError:
                return str(path)

        line = [f"OMP_NUM_THREADS={self.threads}", short(sys.executable), short(sys.argv[0]), *sys.argv[1:]]
        return " ".join(shlex.quote(part) if i > 0 else part for i, part in enumerate(line))

    def environment(self) -> dict[str, Any]:
        gpu = None
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
        return {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "python": platform.python_version(),
                "platform": platform.platform(), "machine": platform.machine(), "cpu": cpu_model(),
                "cpu_count": os.cpu_count(),
                "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                "threads": self.threads, "device": self.device, "gpu": gpu, "versions": library_versions(),
                "git": self._git, "load_average_at_start": self._load_at_start, "load_average_at_save": load_average()}

    def output_path(self, name: str) -> Path:
        """Where ``save(name, ...)`` writes: ``--output`` if given, else ``<--results>/<name>.json``."""
        args = self.args
        results = args.results if args is not None else RESULTS
        if args is None or not args.output:
            return results / f"{name}.json"
        output = Path(args.output)
        if output.suffix != ".json":
            output = output.with_name(output.name + ".json")
        return output if len(output.parts) > 1 else results / output

    def previous(self, name: str) -> dict[str, Any]:
        """The results file this run would write, as saved before ({} if none): to resume or merge."""
        return read_json(self.output_path(name))

    def save(self, name: str, payload: dict[str, Any], *, merge: str | None = None, echo: bool = True,
             indent: int = 2) -> Path:
        """Write the header and ``payload`` to the results file atomically and print its path.

        ``merge``: a key of ``payload`` holding a dict of sections (tasks, parts, ...): each section this run
        produced records this run's ``command``, and the sections of the file saved before that this run did not
        produce are kept, so that parts run separately share one file.
        """
        clash = set(HEADER) & set(payload)
        if clash:
            raise ValueError(f"payload keys {sorted(clash)} are the header's; rename them")
        path = self.output_path(name)
        if merge is not None:
            for entry in payload[merge].values():
                entry.setdefault("command", self.command)
            for key, entry in read_json(path).get(merge, {}).items():
                payload[merge].setdefault(key, entry)
        document = {"benchmark": self.name, "command": self.command, "threads": self.threads,
                    "environment": self.environment(),
                    "steps": {step: totals.as_dict() for step, totals in self.steps.items()}, **payload}
        write_json(path, document, indent=indent)
        if echo:
            print(f"saved {path}", flush=True)
        return path
