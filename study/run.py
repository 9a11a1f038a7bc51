"""``python -m study.run``: run (or continue) an optimizer study on MNIST.

``--trials N`` is the study's target: re-running the same command after a crash, Ctrl-C or
SIGTERM continues until N trials are finished (complete or pruned); nothing finished runs
again, and a study already at N runs nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_STARTED = False

if __name__ == "__main__":  # before the libraries load (seconds): nothing is written yet

    def _stopped_while_starting(signum: int, frame: Any) -> None:
        if _STARTED:  # main() has run: its own handling is over, the process is exiting
            return
        sys.stderr.write("python -m study.run: interrupted while starting; nothing was run.\n")
        os._exit(130)

    for _signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_signal, _stopped_while_starting)

import optuna
import torch

from search_spaces import SearchSpace, get_space, list_spaces
from search_spaces.space_file import (
    SpaceFileError,
    file_epochs,
    is_space_file,
    load_space,
    space_to_toml,
)
from study.cli import (
    HelpFormatter,
    Parser,
    UsageError,
    positive_int,
    registry_name,
    resolve_device,
    toolkit_version,
)
from study.search.interrupts import STOP
from study.search.objective import checkpoint_folder
from study.search.pruners import PRUNE_WITHIN, create_pruner, get_pruner_info, list_pruners
from study.search.samplers import (
    ALLOCATIONS,
    BalancedSampler,
    create_sampler,
    get_sampler_info,
    list_samplers,
)
from study.search.trial_loop import FINISHED, run_trials, waiting_retries
from study.search.workers import WorkerFailed, cpu_cores, default_workers, run_workers
from study.store import records
from study.store.storage import (
    GRACE_PERIOD,
    HEARTBEAT_INTERVAL,
    StorageError,
    default_storage_url,
    display_url,
    open_storage,
    open_study,
    storage_failure,
    stored_settings,
)
from study.summary import summarize
from study.train.config import PRECISIONS, ConfigError, TrialConfig
from study.train.data import DATA_DIR_ENV, MNIST_TRAIN, DataError, check_files, load_mnist
from study.train.loop import fast_bf16_available
from study.train.optim import get_optimizer_info

__all__ = ["main", "build_parser"]

logger = logging.getLogger(__name__)
PROG = "python -m study.run"
DEFAULT_TRIALS = 50
#: --seed stays below 2**31 so that the seeds derived from it stay below 2**32.
MAX_SEED = 2**31


def _name_list(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    for name in names:
        try:
            get_optimizer_info(name)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    if not names:
        raise argparse.ArgumentTypeError(f"expected names like sgd,adam, but got {value!r}")
    return names


def _seed(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if not 0 <= number < MAX_SEED:
        raise argparse.ArgumentTypeError(
            f"must be an integer in [0, {MAX_SEED - 1}] (seeds derived from it must stay "
            f"below 2**32), but got {value!r}"
        )
    return number


def _lr_grid(value: str) -> tuple[float, float, int]:
    parts = value.split(",")
    try:
        low, high, per_decade = float(parts[0]), float(parts[1]), int(parts[2])
        finite = math.isfinite(low) and math.isfinite(high)
        if len(parts) != 3 or not finite or not (0 < low < high) or not 1 <= per_decade <= 100:
            raise ValueError
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(
            f"expected LOW,HIGH,N with 0 < LOW < HIGH (finite) and 1 to 100 points per "
            f"decade, e.g. 1e-5,1,4, but got {value!r}"
        ) from None
    return low, high, per_decade


def _fraction(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0.0 <= number <= 0.5:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 0.5], but got {value!r}")
    return number


def _space(value: str) -> str:
    """A registered space's name, or the path of a TOML space file (read by ``_plan``)."""
    return value if is_space_file(value) else registry_name(get_space)(value)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (every option documents its default)."""
    parser = Parser(
        prog=PROG,
        allow_abbrev=False,  # --workers re-runs this command line: options spelt out
        description="Run or continue an Optuna study of optimizers and learning rates for "
        "the lab's MLP on MNIST. Re-running the same command continues the study.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--trials", type=positive_int, default=None,
                        help="target number of finished (complete or pruned) trials "
                        "(default: 50; the whole grid for the lr-grid space)")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help="training epochs per trial (default: 5, the lab's; a space "
                        "file's own 'epochs' where it has one)")
    parser.add_argument("--space", type=_space, default="default", metavar="NAME|FILE.toml",
                        help=f"search space: {', '.join(list_spaces())}, or a TOML space file "
                        "(write one with --print-space)")
    parser.add_argument("--print-space", action="store_true",
                        help="print the space (with --space, --optimizers and --epochs "
                        "applied) as a TOML space file and exit: a starting point for your own")
    parser.add_argument("--optimizers", type=_name_list, default=None, metavar="A,B",
                        help="only these optimizers, comma-separated, e.g. sgd,adam "
                        "(default: all the space searches; default: sgd, rmsprop, adam, "
                        "adamw; wide: all nine)")
    parser.add_argument("--study-name", default=None,
                        help="study name (default: the space's name)")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="database URL, e.g. postgresql://user:pw@host/db "
                        "(default: sqlite:///studies/<study-name>.db)")
    parser.add_argument("--sampler", type=registry_name(get_sampler_info), default=None,
                        help=f"sampler: {', '.join(list_samplers())} (default: tpe; the "
                        "lr-grid space visits its grid with Optuna's GridSampler)")
    parser.add_argument("--allocation", choices=ALLOCATIONS, default=None,
                        help="balanced: each new trial gets the optimizer with the fewest "
                        "trials so far, the sampler chooses the rest; sampler: the sampler "
                        "chooses the optimizer too (default: balanced where the space "
                        "chooses an optimizer; kept with the study)")
    pruners = ", ".join(f"{s.name}: {s.pruner}" for s in (get_space(n) for n in list_spaces()))
    parser.add_argument("--pruner", type=registry_name(get_pruner_info), default=None,
                        help=f"pruner: {', '.join(list_pruners())} (default: the space's; "
                        f"{pruners})")
    parser.add_argument("--prune-within", choices=PRUNE_WITHIN, default=None,
                        help="compare a trial with the trials of its own optimizer, or with "
                        "every trial of the study (default: optimizer where the space "
                        "chooses an optimizer; kept with the study)")
    parser.add_argument("--repeats", type=positive_int, default=None, metavar="K",
                        help="train each trial's configuration with K seeds, interleaved "
                        "epoch by epoch; the trial reports and is pruned on their mean "
                        "(default: 1; kept with the study)")
    parser.add_argument("--lr-grid", type=_lr_grid, default=None, metavar="LOW,HIGH,N",
                        help="the lr-grid space's grid: LOW to HIGH with N points per decade "
                        "(default: 1e-5,1,4: 21 learning rates)")
    parser.add_argument("--seed", type=_seed, default=0,
                        help="seeds the sampler, and a new study: its validation split and "
                        "trial k's training seeds SEED + k*K ... SEED + k*K + K-1 (--repeats K) "
                        "derive from the study's seed, whatever the seed of a worker that "
                        "joins it later")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where training runs; auto picks cuda when available")
    parser.add_argument("--batch-size", type=positive_int, default=64,
                        help="training batch size")
    parser.add_argument("--precision", choices=("auto", *PRECISIONS), default=None,
                        help="fp32, or bf16 (autocast with float32 master weights); auto "
                        "picks bf16 on a CPU with fast bfloat16, fp32 on a GPU (at batch 64 "
                        "bf16 is slower there) (default: auto; kept with the study)")
    parser.add_argument("--validation", type=_fraction, default=0.0, metavar="FRACTION",
                        help="hold out this share of the training set and prune on it "
                        "(the test set is then measured once per trial); 0 prunes on the "
                        "test set")
    parser.add_argument("--train-size", type=positive_int, default=None, metavar="N",
                        help="train on the first N training examples only, for a quick look "
                        "(default: all 60000, less the validation share)")
    parser.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                        help="folder with the four MNIST .gz IDX files (default: "
                        f"${DATA_DIR_ENV} if set, else the copy installed with the package)")
    parser.add_argument("--workers", type=positive_int, default=None, metavar="W",
                        help="local worker processes sharing the study, each with CORES/W "
                        "threads and its own sampler seed (SEED, SEED+1, ...) (default: 2 on "
                        "a CPU with 2 cores or more; on a GPU one per 2 CPU cores, up to 8)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads for torch, per worker (default: CORES/W with "
                        "several workers, torch's choice with one)")
    parser.add_argument("--heartbeat", type=positive_int, default=HEARTBEAT_INTERVAL,
                        metavar="SECONDS",
                        help="seconds between a running trial's heartbeats in the storage")
    parser.add_argument("--grace", type=positive_int, default=GRACE_PERIOD, metavar="SECONDS",
                        help="seconds of silence after which a running trial counts as dead "
                        "(its worker crashed): failed, and retried on a server database")
    parser.add_argument("--checkpoints", type=Path, default=None, metavar="DIR",
                        help="write each complete or pruned trial's checkpoint (the lab's "
                        "dict: parameters, optimizer, epoch, plus config and schedule state) "
                        "to DIR/<study-name>/trial-NNNNN.pt; its path is the trial's "
                        "'checkpoint' attribute (default: none)")
    parser.add_argument("--keep-checkpoints", type=positive_int, default=None, metavar="K",
                        help="with --checkpoints: keep only the best K trials' files "
                        "(default: keep all)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv``; returns the exit code (2 for a usage error)."""
    # group=True and heartbeat are "experimental" in Optuna 5; we rely on them on purpose.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    global _STARTED
    _STARTED = True
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a bad option (already printed)
        return int(exc.code or 0)
    logging.basicConfig(level=logging.WARNING if args.worker else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Ctrl-C and SIGTERM from here on are requests to stop, acted on where nothing is lost
    # (study.search.interrupts): the run ends with no RUNNING trial of its own, the summary, 130.
    with STOP.handling():
        try:
            code = _run(args, argv)
        except (UsageError, ConfigError, DataError, StorageError, WorkerFailed) as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # before any trial began: nothing to close
            code = 0
        except Exception as exc:  # the database failing outside a trial (progress, summary)
            failure = storage_failure(exc, getattr(args, "url", None) or args.storage or "")
            if failure is None:
                raise
            print(f"{PROG}: error: {failure}", file=sys.stderr)
            return 2
        if STOP.requested and code == 0:  # the run had finished, or not begun
            if not args.worker:
                print(f"{PROG}: stopped by {STOP.name or 'Ctrl-C'}; run the same command to "
                      "continue.", file=sys.stderr)
            return 130
        return code


@dataclass(frozen=True)
class _Plan:
    """What the command line asks for, resolved and checked before anything is touched."""

    space: SearchSpace
    target: int
    allocation: str
    prune_within: str
    pruner: str
    precision: str
    repeats: int
    device: str
    workers: int
    threads: int | None


def _load_space(args: argparse.Namespace) -> SearchSpace:
    """The space ``--space`` names; a space file also gives ``--epochs`` its default."""
    if not is_space_file(args.space):
        args.epochs = args.epochs or 5
        return get_space(args.space)
    try:
        space = load_space(args.space, epochs=args.epochs)
    except SpaceFileError as exc:
        raise UsageError(f"--space {args.space}: {exc}") from None
    if args.epochs is None:
        args.epochs = file_epochs(args.space) or 5
    try:
        get_pruner_info(space.pruner)
    except ValueError as exc:
        raise UsageError(f"--space {args.space}: pruner: {exc}") from None
    return space


def _plan(args: argparse.Namespace) -> _Plan:
    held_out = max(1, round(args.validation * MNIST_TRAIN)) if args.validation > 0 else 0
    available = MNIST_TRAIN - held_out
    if args.train_size is not None and args.train_size > available:
        raise UsageError(
            f"--train-size {args.train_size}: MNIST has {MNIST_TRAIN} training images"
            + (f", {available} after the validation share" if args.validation > 0 else "")
            + f"; give at most {available}, or leave --train-size out for all of them.")
    if args.grace <= args.heartbeat:
        raise UsageError(f"--grace {args.grace}: it must be longer than --heartbeat "
                         f"{args.heartbeat}, or every trial would count as dead between two "
                         f"heartbeats; give e.g. --grace {3 * args.heartbeat}.")
    if args.keep_checkpoints is not None and args.checkpoints is None:
        raise UsageError(f"--keep-checkpoints {args.keep_checkpoints}: it keeps the best "
                         "trials' checkpoints; give --checkpoints DIR too.")
    device = resolve_device(args.device)
    space = _load_space(args)
    if args.optimizers is not None:
        try:
            space = space.restrict(args.optimizers)
        except ValueError as exc:
            raise UsageError(f"--optimizers: {exc}") from None
    if args.lr_grid is not None:
        try:
            space = space.with_lr_grid(*args.lr_grid)
        except ValueError as exc:
            raise UsageError(f"--lr-grid: {exc}") from None
    grid = space.grid()
    chooses = bool(space.optimizers)
    if grid is not None:
        size = len(grid["optimizer"]) * len(grid["lr"])
        for option, value, allowed in (("--sampler", args.sampler, None),
                                       ("--pruner", args.pruner, "none"),
                                       ("--allocation", args.allocation, "sampler")):
            if value is not None and value != allowed:
                raise UsageError(
                    f"{option} {value}: the {space.name!r} space visits each of its {size} "
                    f"grid points once with Optuna's GridSampler, to the last epoch, which "
                    f"is balanced already; leave {option} out."
                )
        target = args.trials or size
        if target > size:
            raise UsageError(
                f"--trials {target}: the grid has {size} points ({len(grid['optimizer'])} "
                f"optimizers x {len(grid['lr'])} learning rates); leave --trials out to run "
                f"them all, or use --repeats for more seeds per point."
            )
    else:
        target = args.trials or DEFAULT_TRIALS
    allocation = args.allocation or ("balanced" if chooses and grid is None else "sampler")
    if allocation == "balanced" and not chooses:
        raise UsageError(
            f"--allocation balanced: the {space.name!r} space runs fixed configurations in "
            f"turn; leave --allocation out."
        )
    prune_within = args.prune_within or ("optimizer" if chooses else "study")
    precision = args.precision or "auto"
    if precision == "auto":
        # bf16 on a CPU with fast bfloat16 only: on a GPU, batch 64 is bound by kernel
        # launches and autocast's casts add launches (1.99 s against 1.65 s per epoch in
        # fp32 on an H200).
        precision = "bf16" if device == "cpu" and fast_bf16_available(device) else "fp32"
    elif precision == "bf16" and not fast_bf16_available(device):
        raise UsageError(
            f"--precision bf16: this {device.upper()} has no fast bfloat16 (no AVX-512 BF16 or "
            f"AMX on a CPU; bf16 support on a GPU), so it would run slower than fp32; use "
            f"--precision fp32 or auto."
        )
    workers = args.workers or (1 if args.worker else default_workers(device))
    if args.seed + workers - 1 >= MAX_SEED:
        raise UsageError(f"--seed {args.seed}: its {workers} workers seed their samplers with "
                         f"SEED to SEED+{workers - 1}, which must stay below {MAX_SEED}; use a "
                         "smaller --seed.")
    threads = args.threads or (max(1, cpu_cores() // workers) if workers > 1 else None)
    return _Plan(space=space, target=target, allocation=allocation,
                 prune_within=prune_within, pruner=args.pruner or space.pruner,
                 precision=precision, repeats=args.repeats or 1, device=device,
                 workers=workers, threads=threads)


#: Options whose default depends on the space or the machine: an existing study keeps its
#: own value unless the option is given (then it must match, like every kept setting).
_ADOPTED = ("allocation", "prune_within", "repeats", "precision")


def _adopt(plan: _Plan, args: argparse.Namespace, stored: dict[str, Any] | None) -> _Plan:
    """``plan`` with the settings of an existing study for the options not given."""
    if stored is None:
        return plan
    changes = {key: stored[key] for key in _ADOPTED
               if getattr(args, key) is None and key in stored}
    if changes.get("precision") == "bf16" and not fast_bf16_available(plan.device):
        logger.warning("this study trains in bf16, which this %s runs without fast bfloat16 "
                       "(slower than usual, the same numbers)", plan.device)
    return dataclasses.replace(plan, **changes)


def _check_same_space(
    path: str, space: SearchSpace, epochs: int, stored: dict[str, Any]
) -> None:
    """A study keeps the ranges it was created with: a space file edited since is refused."""
    kept = stored.get("space_definition")
    now = json.loads(json.dumps(space.definition(epochs)))
    if kept is not None and kept != now:
        changed = sorted(k for k in {*kept, *now} if kept.get(k) != now.get(k))
        raise UsageError(
            f"--space {path}: the file's {', '.join(changed)} changed since study "
            f"{stored.get('space', space.name)!r} was created (its trials are only comparable "
            f"under the same ranges); restore the file, or pass a new --study-name."
        )


def _without(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """``argv`` less ``options`` and their values (``--opt V`` or ``--opt=V``)."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token in options:
            skip = True
        elif not token.startswith(tuple(f"{o}=" for o in options)):
            out.append(token)
    return out


#: For tests of workers started at the same instant: with ``STUDY_TEST_START_FILE=PATH`` a
#: process writes ``PATH.<pid>`` when ready to open the storage, then waits for ``PATH``.
START_HOOK = "STUDY_TEST_START_FILE"


def _start_together() -> None:
    path = os.environ.get(START_HOOK)
    if not path:
        return
    Path(f"{path}.{os.getpid()}").touch()
    while not Path(path).exists():
        time.sleep(0.001)


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    plan = _plan(args)
    space, target = plan.space, plan.target
    if args.print_space:
        print(space_to_toml(space, epochs=args.epochs), end="")
        return 0
    if plan.threads:
        torch.set_num_threads(plan.threads)
    study_name = args.study_name or space.name
    url = args.storage or default_storage_url(study_name)
    args.url = url  # for messages about the database
    # Data first: a missing or corrupt file stops the run before any database is created.
    # With several workers this process trains nothing: it only checks the files.
    data = None
    if plan.workers > 1:
        check_files(args.data_dir)
    else:
        data = load_mnist(args.data_dir, device=plan.device,
                          validation_fraction=args.validation, split_seed=args.seed,
                          train_size=args.train_size)
    _start_together()
    storage = open_storage(url, heartbeat=args.heartbeat, grace=args.grace)
    stored = stored_settings(storage, study_name, legacy=records.LEGACY_SETTINGS)
    if stored is not None and is_space_file(args.space):
        _check_same_space(args.space, space, args.epochs, stored)
    plan = _adopt(plan, args, stored)
    settings = {
        "space": space.name,
        "space_description": space.description,
        "space_definition": space.definition(args.epochs),
        "optimizers": list(space.optimizer_names),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "validation": args.validation,
        "train_size": args.train_size,
        "allocation": plan.allocation,
        "prune_within": plan.prune_within,
        "repeats": plan.repeats,
        "precision": plan.precision,
        "lr_grid": list(space.lr_grid) if space.lr_grid else None,
        "seed": args.seed,
        "eval_set": "validation" if args.validation > 0 else "test",
        "toolkit_version": toolkit_version(),
    }
    assert set(settings) == set(records.SETTINGS)
    pruner = create_pruner(plan.pruner, epochs=args.epochs, within=plan.prune_within)
    optuna_study = open_study(storage, study_name, settings=settings,
                              checked=records.CHECKED_SETTINGS,
                              legacy=records.LEGACY_SETTINGS, pruner=pruner)
    if optuna_study.metric_names is None:
        optuna_study.set_metric_names(list(records.METRIC_NAMES))
    # The study's seed, not this worker's: the validation split and every trial's training
    # seeds derive from it, the same for every worker and every resume. --seed of a worker
    # joining an existing study seeds only its sampler.
    study_seed = optuna_study.user_attrs.get("seed")
    if study_seed is None:  # a study made before the seed was kept: this run's seed is it
        study_seed = args.seed
        optuna_study.set_user_attr("seed", study_seed)
    if data is not None and args.validation > 0 and study_seed != args.seed:
        data = load_mnist(args.data_dir, device=plan.device,
                          validation_fraction=args.validation, split_seed=study_seed,
                          train_size=args.train_size)
    optuna.storages.fail_stale_trials(optuna_study)
    shown_url = display_url(url)

    def summary(wall_seconds: float | None = None) -> str:
        return summarize(storage, study_name, target=target, shown_url=shown_url,
                         storage_option=args.storage and shown_url, wall_seconds=wall_seconds)

    finished = len(optuna_study.get_trials(deepcopy=False, states=FINISHED))
    if space.grid() is not None:  # a grid is done when each point is, once
        finished = space.grid_points_done(optuna_study)
    retries = len(waiting_retries(optuna_study))  # a dead worker's trial, queued again
    if finished >= target and not retries:
        if not args.worker:
            print(f"Study {study_name!r} already has {finished} finished trials (target "
                  f"{target}); nothing to run. Raise --trials to run more.")
            print(summary())
        return 0
    if not args.worker:
        space.enqueue_missing(optuna_study, target)
    # never more workers than trials left
    workers = min(plan.workers, max(target - finished, retries))
    if workers == 1 and data is None:  # one trial left: train it here (files checked above)
        if not args.threads:
            torch.set_num_threads(cpu_cores())
        data = load_mnist(args.data_dir, device=plan.device,
                          validation_fraction=args.validation, split_seed=study_seed,
                          train_size=args.train_size)
    threads = f"{plan.threads} thread" + ("s" if plan.threads != 1 else "")
    logger.info("study %r in %s: %d of %d trials finished; %s on %s (%s, %s set)",
                study_name, shown_url, finished, target,
                f"{workers} workers x {threads}" if workers > 1 else "training",
                plan.device, plan.precision, settings["eval_set"])
    if workers > 1:
        interrupted, wall_seconds = run_workers(
            _without(argv, ("--workers", "--threads", "--seed")), optuna_study,
            workers=workers, threads=plan.threads or 1, seed=args.seed, target=target,
            finished=finished)
    else:
        n_existing = len(optuna_study.get_trials(deepcopy=False))
        grid = space.grid()
        if grid is not None:
            # The study's seed, the same in every worker: GridSampler shuffles the grid with
            # it and gives trial k the k-th point, so workers must agree on the order.
            sampler: optuna.samplers.BaseSampler = optuna.samplers.GridSampler(
                grid, seed=study_seed)
        else:
            sampler = create_sampler(args.sampler or "tpe", seed=args.seed,
                                     n_existing_trials=n_existing)
        if plan.allocation == "balanced":
            sampler = BalancedSampler(sampler)
        optuna_study.sampler = sampler
        checkpoints = (checkpoint_folder(args.checkpoints, study_name)
                       if args.checkpoints is not None else None)
        base = TrialConfig(epochs=args.epochs, batch_size=args.batch_size, seed=study_seed,
                           precision=plan.precision)

        chosen_by = ("grid" if grid is not None else "fixed" if space.configs
                     else args.sampler or "tpe")

        def propose(trial: optuna.Trial) -> TrialConfig:
            seed = study_seed + trial.number * plan.repeats
            trial.set_user_attr(records.SAMPLER, chosen_by)
            return space.config_for(trial, base.replace(seed=seed))

        interrupted, wall_seconds = run_trials(optuna_study, propose, data, epochs=args.epochs,
                                               repeats=plan.repeats, target=target,
                                               finished=finished, quiet=args.worker,
                                               done=space.grid_points_done if grid else None,
                                               checkpoints=checkpoints,
                                               keep_checkpoints=args.keep_checkpoints,
                                               claim_key=f"{url}\n{study_name}", url=url)
    if args.worker:
        return 130 if interrupted else 0
    print(summary(wall_seconds))
    if interrupted:
        print(f"Interrupted by {STOP.name or 'Ctrl-C'}: the trials in training were marked "
              f"failed, finished ones are kept. Run the same command to continue to {target} "
              "finished trials.")
        return 130
    return 0


if __name__ == "__main__":
    code = main()
    # A late Ctrl-C (a second one, while the process exits) changes nothing now.
    for _signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_signal, signal.SIG_IGN)
    sys.exit(code)
