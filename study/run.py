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
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

_STARTED = False

if __name__ == "__main__":  # while the libraries load nothing is written: a signal just exits

    def _stopped_while_starting(signum: int, frame: Any) -> None:
        if _STARTED:  # main() has run: its own handling is over, the process is exiting
            return
        sys.stderr.write("python -m study.run: interrupted while starting; nothing was run.\n")
        os._exit(130)

    for _signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_signal, _stopped_while_starting)

import optuna
import torch
from torch import nn

from search_spaces import SearchSpace, get_space, list_spaces
from search_spaces.space_file import (
    SpaceFileError,
    file_epochs,
    is_space_file,
    load_space,
    space_to_toml,
)
from search_spaces.spaces import BATCH_LIMIT, EPOCHS_LIMIT, MAX_BATCH_SIZE, MAX_EPOCHS
from study.cli import (
    HelpFormatter,
    Parser,
    UsageError,
    float_in,
    int_in,
    positive_int,
    registry_name,
    resolve_device,
    toolkit_version,
    torch_threads,
)
from study.search.interrupts import STOP
from study.search.objective import checkpoint_folder
from study.search.pruners import PRUNE_WITHIN, create_pruner, get_pruner_info, list_pruners
from study.search.samplers import (
    ALLOCATIONS,
    BalancedSampler,
    GridPointSampler,
    create_sampler,
    get_sampler_info,
    list_samplers,
)
from study.search.trial_loop import FINISHED, run_trials, waiting_retries
from study.search.workers import (
    COHORT_LIMIT,
    COHORT_NETWORKS,
    MAX_COHORT,
    NETWORK_BYTES,
    WorkerFailed,
    cohort_memory_cap,
    cpu_cores,
    default_cohort,
    default_workers,
    run_workers,
    sibling_workers,
    stop_with_parent,
    worker_storage,
)
from study.store import records
from study.store.storage import (
    GRACE_PERIOD,
    HEARTBEAT_INTERVAL,
    StorageError,
    check_direction,
    check_output_folder,
    check_storage_url,
    check_study_name,
    default_storage_url,
    display_url,
    open_storage,
    open_study,
    storage_failure,
    stored_settings,
)
from study.summary import summarize
from study.train.cohort_optim import stacked_optimizer_class
from study.train.config import PRECISIONS, ConfigError, TrialConfig
from study.train.data import (
    DATA_DIR_ENV,
    MNIST_TRAIN,
    DataError,
    Dataset,
    check_files,
    load_mnist,
    tensor_dataset,
)
from study.train.loop import TrainingRun, fast_bf16_available
from study.train.optim import get_optimizer_info

__all__ = ["main", "build_parser", "RunOptions", "resolve_options"]

logger = logging.getLogger(__name__)
PROG = "python -m study.run"
DEFAULT_TRIALS = 50
#: The epochs per trial when neither --epochs nor a space file gives them: the lab's.
DEFAULT_EPOCHS = 5
#: --seed stays below 2**31 so that the seeds derived from it stay below 2**32.
MAX_SEED = 2**31


# --- the command line --------------------------------------------------------------------


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


def _space(value: str) -> str:
    """A registered space's name, or the path of a TOML space file (read by ``_load_space``)."""
    return value if is_space_file(value) else registry_name(get_space)(value)


_seed = int_in(0, MAX_SEED - 1, why="seeds derived from it must stay below 2**32")
_fraction = float_in(0.0, 0.5)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (every option documents its default)."""
    parser = Parser(
        prog=PROG,
        allow_abbrev=False,  # --workers re-runs this command line: options spelt out
        description="Run or continue an Optuna study of optimizers and learning rates for "
        "the lab's MLP on MNIST. Re-running the same command continues the study.",
        formatter_class=HelpFormatter,
    )
    # --help lists the options in the order they are added here.
    _add_study_options(parser)
    _add_search_options(parser)
    _add_training_options(parser)
    _add_worker_options(parser)
    _add_checkpoint_options(parser)
    return parser


def _add_study_options(parser: argparse.ArgumentParser) -> None:
    """What to study and where it is kept."""
    parser.add_argument("--trials", type=positive_int, default=None,
                        help="target number of finished (complete or pruned) trials "
                        "(default: 50; the whole grid for the lr-grid space)")
    parser.add_argument("--epochs", type=int_in(1, MAX_EPOCHS, why=EPOCHS_LIMIT), default=None,
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


def _add_search_options(parser: argparse.ArgumentParser) -> None:
    """How trials are chosen, compared and seeded."""
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
                        f"{pruners}). Not kept with the study: a resumed study prunes its "
                        "new trials with the pruner of this run; finished trials keep their "
                        "outcome")
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


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    """Where and on what each trial trains."""
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where training runs; auto picks cuda when available")
    parser.add_argument("--batch-size", type=int_in(1, MAX_BATCH_SIZE, why=BATCH_LIMIT),
                        default=64,
                        help="training batch size")
    parser.add_argument("--precision", choices=("auto", *PRECISIONS), default=None,
                        help="fp32, or bf16 (autocast with float32 master weights); auto "
                        "picks bf16 on a CPU with fast bfloat16, fp32 on a GPU (at batch 64 "
                        "bf16 is slower there) (default: auto; kept with the study)")
    parser.add_argument("--validation", type=_fraction, default=0.0, metavar="FRACTION",
                        help="hold out this share of the training set and prune on it (the "
                        "test set is then measured once per trial); 0 prunes on the test set")
    parser.add_argument("--train-size", type=positive_int, default=None, metavar="N",
                        help="train on the first N training examples only, for a quick look "
                        "(default: all 60000, less the validation share)")
    parser.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                        help="folder with the four MNIST .gz IDX files (default: "
                        f"${DATA_DIR_ENV} if set, else the copy installed with the package)")


def _add_worker_options(parser: argparse.ArgumentParser) -> None:
    """How many processes train, and how a crashed one is noticed."""
    parser.add_argument("--workers", type=positive_int, default=None, metavar="W",
                        help="local worker processes sharing the study, each with CORES/W "
                        "threads and its own sampler seed (SEED, SEED+1, ...) (default: 1 "
                        "with cohorts; with --cohort 1, 2 on a CPU with 2 cores or more, and "
                        "on a GPU one per 2 CPU cores, up to 8)")
    parser.add_argument("--cohort", type=int_in(1, MAX_COHORT, why=COHORT_LIMIT), default=None,
                        metavar="N",
                        help="train N trials at once as one stacked model (the lab's MLP; each "
                        "trial stored as if trained alone); 1 trains one at a time (default: "
                        f"on a CPU {COHORT_NETWORKS['cpu']} networks over --repeats, at least 2 "
                        "trials; 1 on a GPU, with --checkpoints, or your own data or model; "
                        "kept with the study)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads for torch, per worker (default: CORES/W with "
                        "several workers, torch's choice with one)")
    parser.add_argument("--heartbeat", type=positive_int, default=HEARTBEAT_INTERVAL,
                        metavar="SECONDS",
                        help="seconds between a running trial's heartbeats in the storage")
    parser.add_argument("--grace", type=positive_int, default=GRACE_PERIOD, metavar="SECONDS",
                        help="seconds of silence after which a running trial counts as dead "
                        "(its worker crashed): failed, and retried on a server database")


def _add_checkpoint_options(parser: argparse.ArgumentParser) -> None:
    """The trained networks' files, and the hidden flag of a worker process."""
    parser.add_argument("--checkpoints", type=Path, default=None, metavar="DIR",
                        help="write each complete or pruned trial's checkpoint (the lab's "
                        "dict: parameters, optimizer, epoch, plus config and schedule state) "
                        "to DIR/<study-name>/trial-NNNNN.pt; its path is the trial's "
                        "'checkpoint' attribute (default: none)")
    parser.add_argument("--keep-checkpoints", type=positive_int, default=None, metavar="K",
                        help="with --checkpoints: keep only the best K trials' files "
                        "(default: keep all)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)


# --- the command -------------------------------------------------------------------------


def main(
    argv: Sequence[str] | None = None, *, data: Dataset | None = None,
    model: Callable[[], nn.Module] | None = None,
) -> int:
    """Run the command line ``argv``; returns the exit code (2 for a usage error).

    Args:
        argv: the options of ``python -m study.run`` (default: ``sys.argv[1:]``).
        data: train and evaluate on this instead of MNIST: a dataset of your own tensors from
            :func:`study.train.data.tensor_dataset`, unsplit (``--validation`` and
            ``--train-size`` split it here, with the study's seed).
        model: train a model this makes (``() -> nn.Module``, called once per trial and seed
            with the random state seeded by the trial's seed) instead of the lab's MLP.

    With ``data`` or ``model`` the run trains in this process (``--workers`` above 1 is
    refused: worker processes cannot receive Python objects) and needs ``--study-name``.
    """
    # group=True and heartbeat are "experimental" in Optuna 5; we rely on them on purpose.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    global _STARTED
    _STARTED = True
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a bad option (already printed)
        return int(exc.code or 0)
    _set_up_logging(worker=args.worker)
    # Ctrl-C and SIGTERM from here on are requests to stop, acted on where nothing is lost
    # (study.search.interrupts): the run ends with no RUNNING trial of its own, the summary, 130.
    with STOP.handling():
        if args.worker:
            stop_with_parent()
        code = _exit_code(args, argv, data=data, model=model)
        if STOP.requested and code == 0:  # the run had finished, or not begun
            if not args.worker:
                print(f"{PROG}: stopped by {STOP.name or 'Ctrl-C'}; run the same command to "
                      "continue.", file=sys.stderr)
            return 130
        return code


def _set_up_logging(*, worker: bool) -> None:
    """Log progress to stderr (a worker logs only warnings: its parent shows the progress);
    keep Optuna's own chatter quiet."""
    logging.basicConfig(level=logging.WARNING if worker else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _exit_code(
    args: argparse.Namespace, argv: list[str], *, data: Dataset | None = None,
    model: Callable[[], nn.Module] | None = None,
) -> int:
    """Resolve the options and run; a user's mistake, or the database failing outside a
    trial, is one line on stderr and exit code 2, never a traceback."""
    options: RunOptions | None = None
    try:
        options = resolve_options(args, argv=argv, data=data, model=model)
        return _run(options)
    except (UsageError, ConfigError, DataError, StorageError, WorkerFailed) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before any trial began: nothing to close
        return 0
    except Exception as exc:  # the database failing outside a trial (progress, summary)
        failure = storage_failure(exc, options.url if options else args.storage or "")
        if failure is None:
            raise
        print(f"{PROG}: error: {failure}", file=sys.stderr)
        return 2


def _run(options: RunOptions) -> int:
    """Open the study, run it to its target and print its summary; returns the exit code."""
    if options.print_space:
        print(space_to_toml(options.space, epochs=options.epochs), end="")
        return 0
    _check_data(options)
    if options.space.grid() is not None and options.repeats < records.MIN_SEEDS and not (
            options.worker):
        logger.warning(
            "--repeats %d: %d seed%s per learning rate give the grid no intervals; the report "
            "gives a t-interval from %d seeds and the band width's from %d (--repeats %d).",
            options.repeats, options.repeats, "" if options.repeats == 1 else "s",
            records.MIN_SEEDS, records.MIN_BOOTSTRAP_SEEDS, records.MIN_BOOTSTRAP_SEEDS)
    storage = open_storage(options.url, heartbeat=options.heartbeat, grace=options.grace)
    optuna_study, options = _open_study(storage, options)
    if options.threads:
        torch.set_num_threads(options.threads)
    study_seed = _study_seed(optuna_study, options)
    optuna.storages.fail_stale_trials(optuna_study)
    finished, retries = _progress(optuna_study, options.space)
    if finished >= options.target and not retries:
        if not options.worker:
            print(f"Study {options.study_name!r} already has {finished} finished trials "
                  f"(target {options.target}); nothing to run. Raise --trials to run more.")
            print(_summary(storage, options))
        return 0
    if not options.worker:
        options.space.enqueue_missing(optuna_study, options.target)
    # never more workers than trials left
    workers = min(options.workers, max(options.target - finished, retries))
    interrupted, wall_seconds = _train(optuna_study, options, workers=workers,
                                       study_seed=study_seed, finished=finished)
    return _report(storage, options, interrupted=interrupted, wall_seconds=wall_seconds)


# --- resolving the options ---------------------------------------------------------------


@dataclass(frozen=True)
class RunOptions:
    """The command line resolved and checked before anything is read or written: the space
    narrowed by --optimizers and --lr-grid, and every default that depends on the space or
    the machine filled in. An existing study's own settings replace the defaults of the
    options it keeps (see :func:`_adopt`)."""

    argv: tuple[str, ...]  # the command line, re-run by the workers
    space: SearchSpace
    space_file: str | None  # --space, when it names a TOML file
    epochs: int
    target: int
    sampler: str
    allocation: str
    pruner: str
    prune_within: str
    repeats: int
    precision: str
    seed: int
    device: str
    batch_size: int
    validation: float
    train_size: int | None
    data_dir: Path | None
    workers: int
    cohort: int | None  # trials trained at once; None until resolved (after the study's own)
    threads: int | None  # per worker; None (one worker, no --threads) leaves torch's choice
    threads_given: bool
    workers_given: bool  # --workers on the command line (else the default follows the cohort)
    study_name: str
    url: str
    storage: str | None  # --storage, repeated in the summary's commands
    heartbeat: int
    grace: int
    checkpoints: Path | None
    keep_checkpoints: int | None
    print_space: bool
    worker: bool
    given: frozenset[str]  # the options of _ADOPTED the command line gives
    data: Dataset | None = None  # main's data: trained on instead of MNIST
    model: Callable[[], nn.Module] | None = None  # main's model: trained instead of the MLP

    @property
    def eval_set(self) -> str:
        """What the trials are pruned on: the validation share, or the test set."""
        return "validation" if self.validation > 0 else "test"


#: Options whose default depends on the space or the machine: an existing study keeps its
#: own value unless the option is given (then it must match, like every kept setting). Each
#: is a field of :class:`RunOptions` and a setting of ``records.CHECKED_SETTINGS``.
_ADOPTED = (records.ALLOCATION, records.PRUNE_WITHIN, records.REPEATS, records.PRECISION,
            records.COHORT)


def resolve_options(
    args: argparse.Namespace, *, argv: Sequence[str], data: Dataset | None = None,
    model: Callable[[], nn.Module] | None = None,
) -> RunOptions:
    """``args`` (parsed from ``argv``) resolved and checked, for :func:`main`'s ``data`` and
    ``model``; raises ``UsageError``."""
    own = data is not None or model is not None
    if own:
        _check_own(args, data)
    _check_option_pairs(args, mnist=data is None)
    device = resolve_device(args.device)
    space, epochs = _load_space(args)
    space = _narrow_space(space, args)
    target = _target(space, args)
    allocation = args.allocation or (
        "balanced" if space.optimizers and space.grid() is None else "sampler")
    if allocation == "balanced" and not space.optimizers:
        raise UsageError(
            f"--allocation balanced: the {space.name!r} space runs fixed configurations in "
            f"turn; leave --allocation out."
        )
    precision = _precision(args.precision, device)
    _check_cohort(args, _cohort_refusal(space, checkpoints=args.checkpoints, own=own))
    workers = 1 if own else _workers(args, device)
    study_name = space.name if args.study_name is None else args.study_name
    _check_where(study_name, args)
    storage = args.storage or (worker_storage() if args.worker else None)
    return RunOptions(
        argv=tuple(argv), space=space, epochs=epochs, target=target,
        space_file=args.space if is_space_file(args.space) else None,
        sampler=args.sampler or "tpe", allocation=allocation,
        pruner=args.pruner or space.pruner,
        prune_within=args.prune_within or ("optimizer" if space.optimizers else "study"),
        repeats=args.repeats or 1, precision=precision, seed=args.seed, device=device,
        batch_size=args.batch_size, validation=args.validation, train_size=args.train_size,
        data_dir=args.data_dir, workers=workers,
        cohort=args.cohort,
        threads=torch_threads(args.threads, workers=workers) if workers > 1 else args.threads,
        threads_given=args.threads is not None, workers_given=args.workers is not None,
        study_name=study_name,
        url=storage or default_storage_url(study_name), storage=storage,
        heartbeat=args.heartbeat, grace=args.grace, checkpoints=args.checkpoints,
        keep_checkpoints=args.keep_checkpoints, print_space=args.print_space,
        worker=args.worker,
        given=frozenset(key for key in _ADOPTED if getattr(args, key) is not None),
        data=data, model=model,
    )


def _check_where(study_name: str, args: argparse.Namespace) -> None:
    """The study's name, --storage and --checkpoints, checked before anything is read or
    written (a name or URL a database refuses, a folder that cannot be written)."""
    check_study_name(study_name)
    if args.storage is not None:
        check_storage_url(args.storage)
    if args.checkpoints is not None:
        check_output_folder(args.checkpoints, option="--checkpoints")


def _check_own(args: argparse.Namespace, data: Dataset | None) -> None:
    """The options a run of :func:`main`'s own ``data`` or ``model`` cannot take."""
    if args.workers is not None and args.workers > 1:
        raise UsageError(f"--workers {args.workers}: a run given its own data or model in "
                         "Python trains in this process only (worker processes cannot receive "
                         "them); leave --workers out, or give --workers 1.")
    if args.study_name is None:
        raise UsageError("--study-name is needed with your own data or model, so that its "
                         "trials never join an MNIST study of the same space; give one.")
    if data is not None and args.data_dir is not None:
        raise UsageError(f"--data-dir {args.data_dir}: it names MNIST's files, and this run "
                         "trains on the data given to main(); leave --data-dir out.")
    if data is not None and data.eval_set != "test":
        raise UsageError("data: give it unsplit (tensor_dataset without validation_fraction) "
                         "and --validation FRACTION, so that the study's seed splits it.")


def _cohort_refusal(space: SearchSpace, *, checkpoints: Path | None, own: bool) -> str | None:
    """Why this run cannot train in cohorts (``None``: it can)."""
    if own:
        return "cohorts train the lab's MLP on MNIST, and this run trains your own data or model"
    if checkpoints is not None:
        return ("trials trained in cohorts keep no checkpoints (--checkpoints trains one trial "
                "at a time)")
    names = set(space.optimizer_names) or {
        config.get("optimizer", TrialConfig().optimizer) for config in space.configs.values()}
    for name in sorted(names):
        try:
            stacked_optimizer_class(name)
        except ValueError:
            return f"optimizer {name!r} of the space has no batched update for a cohort"
    return None


def _check_cohort(args: argparse.Namespace, refusal: str | None) -> None:
    """--cohort above 1 where cohorts cannot train (``refusal`` says why)."""
    if refusal is not None and args.cohort is not None and args.cohort > 1:
        raise UsageError(f"--cohort {args.cohort}: {refusal}; leave --cohort out.")


def _check_option_pairs(args: argparse.Namespace, *, mnist: bool = True) -> None:
    """Options that are only valid together with others, or within others' bounds
    (``mnist``: --train-size is checked against MNIST's size)."""
    held_out = max(1, round(args.validation * MNIST_TRAIN)) if args.validation > 0 else 0
    available = MNIST_TRAIN - held_out
    if mnist and args.train_size is not None and args.train_size > available:
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


def _load_space(args: argparse.Namespace) -> tuple[SearchSpace, int]:
    """The space ``--space`` names and the epochs per trial: ``--epochs``, else a space
    file's own, else :data:`DEFAULT_EPOCHS`."""
    if not is_space_file(args.space):
        return get_space(args.space), args.epochs or DEFAULT_EPOCHS
    try:
        space = load_space(args.space, epochs=args.epochs)
    except SpaceFileError as exc:
        raise UsageError(f"--space {args.space}: {exc}") from None
    epochs = args.epochs or file_epochs(args.space) or DEFAULT_EPOCHS
    try:
        get_pruner_info(space.pruner)
    except ValueError as exc:
        raise UsageError(f"--space {args.space}: pruner: {exc}") from None
    return space, epochs


def _narrow_space(space: SearchSpace, args: argparse.Namespace) -> SearchSpace:
    """``space`` with --optimizers and --lr-grid applied."""
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
    return space


def _target(space: SearchSpace, args: argparse.Namespace) -> int:
    """The number of finished trials to run to: --trials, else the whole grid of a grid
    space (whose sampler, pruner and allocation are fixed), else :data:`DEFAULT_TRIALS`."""
    grid = space.grid()
    if grid is None:
        return args.trials or DEFAULT_TRIALS
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
    return target


def _precision(option: str | None, device: str) -> str:
    """--precision resolved for ``device``: ``auto`` picks bf16 on a CPU with fast bfloat16
    only. On a GPU a batch of 64 is bound by kernel launches, and autocast's casts add
    launches, so fp32 is the faster choice there."""
    precision = option or "auto"
    if precision == "auto":
        return "bf16" if device == "cpu" and fast_bf16_available(device) else "fp32"
    if precision == "bf16" and not fast_bf16_available(device):
        raise UsageError(
            f"--precision bf16: this {device.upper()} has no fast bfloat16 (no AVX-512 BF16 or "
            f"AMX on a CPU; bf16 support on a GPU), so it would run slower than fp32; use "
            f"--precision fp32 or auto."
        )
    return precision


def _workers(args: argparse.Namespace, device: str) -> int:
    """--workers, else one for a worker process and the machine's default otherwise; each
    seeds its sampler with --seed plus its index, which must stay below :data:`MAX_SEED`."""
    # the final default follows the study's cohort (_settle_cohort); the seed check takes the
    # most workers it can be
    workers = args.workers or (1 if args.worker else default_workers(device, 1))
    if args.seed + workers - 1 >= MAX_SEED:
        raise UsageError(f"--seed {args.seed}: its {workers} workers seed their samplers with "
                         f"SEED to SEED+{workers - 1}, which must stay below {MAX_SEED}; use a "
                         "smaller --seed.")
    return workers


# --- opening the study -------------------------------------------------------------------


def _check_data(options: RunOptions) -> None:
    """A missing or corrupt data file stops the run before any database is created. A run
    that trains here reads the files now (``load_mnist`` keeps them for training); one that
    starts workers trains nothing itself and only checks them."""
    if options.workers > 1:
        check_files(options.data_dir)
    else:
        _training_data(options, split_seed=options.seed)


def _training_data(options: RunOptions, *, split_seed: int) -> Dataset:
    """MNIST as this run trains on it, split with ``split_seed`` when there is a validation
    share. ``load_mnist`` keeps the files it read and each split it made, so asking again
    reads nothing; without a validation share the split seed plays no part, and the copy
    the check made is the one trained on. :func:`main`'s own data is split the same way."""
    split_seed = split_seed if options.validation > 0 else options.seed
    own = options.data
    if own is not None:
        return tensor_dataset(own.train_x, own.train_y, own.test_x, own.test_y,
                              device=options.device, validation_fraction=options.validation,
                              split_seed=split_seed, train_size=options.train_size,
                              num_classes=own.num_classes)
    return load_mnist(options.data_dir, device=options.device,
                      validation_fraction=options.validation,
                      split_seed=split_seed, train_size=options.train_size)


def _open_study(
    storage: optuna.storages.BaseStorage, options: RunOptions
) -> tuple[optuna.Study, RunOptions]:
    """The study, created with the settings of ``options`` or checked against its own; and
    ``options`` with the study's own settings for the kept options left out."""
    check_direction(storage, options.study_name)
    stored = stored_settings(storage, options.study_name, legacy=records.LEGACY_SETTINGS)
    if stored is not None and options.space_file is not None:
        _check_same_space(options, stored)
    options = _settle_cohort(_adopt(options, stored))
    pruner = create_pruner(options.pruner, epochs=options.epochs, within=options.prune_within)
    optuna_study = open_study(storage, options.study_name, settings=_settings(options),
                              checked=records.CHECKED_SETTINGS,
                              legacy=records.LEGACY_SETTINGS, pruner=pruner)
    if optuna_study.metric_names is None:
        optuna_study.set_metric_names(list(records.METRIC_NAMES))
    return optuna_study, options


def _settle_cohort(options: RunOptions) -> RunOptions:
    """``options`` with its cohort size and, where --workers was left out, the workers that
    go with it. The size is the one given or kept with the study, else the device's default;
    1 where cohorts cannot train; on a GPU no more trials than fit in this process's share
    of the free memory (a size kept with the study is lowered to fit for this run, a
    ``--cohort`` given too large is refused with the size that fits)."""
    own = options.data is not None or options.model is not None
    cohort = options.cohort or default_cohort(options.device, options.repeats)
    if _cohort_refusal(options.space, checkpoints=options.checkpoints, own=own) is not None:
        cohort = 1
    workers, threads = options.workers, options.threads
    if not options.workers_given and not options.worker and not own:
        space = options.space
        workers = default_workers(options.device, cohort,
                                  independent=space.grid() is not None or bool(space.configs))
        given = options.threads if options.threads_given else None
        threads = torch_threads(given, workers=workers) if workers > 1 else given
    if options.device != "cpu" and cohort > 1 and workers == 1:
        cohort = _fit_in_memory(cohort, options)
    return dataclasses.replace(options, cohort=cohort, workers=workers, threads=threads)


def _fit_in_memory(cohort: int, options: RunOptions) -> int:
    """``cohort``, or the most trials that fit in this worker's share of the GPU's free
    memory; raises ``UsageError`` for a ``--cohort`` given too large."""
    free = torch.cuda.mem_get_info()[0] // sibling_workers()
    cap = cohort_memory_cap(free, options.repeats)
    if cohort > cap and records.COHORT in options.given:
        need = cohort * options.repeats * NETWORK_BYTES / 2**30
        raise UsageError(
            f"--cohort {cohort}: {cohort * options.repeats} networks need about "
            f"{need:.1f} GiB of GPU memory, and {free / 2**30:.1f} GiB are free; give "
            f"--cohort {cap} or less, or leave --cohort out to fit it.")
    return min(cohort, cap)


def _check_same_space(options: RunOptions, stored: dict[str, Any]) -> None:
    """A study keeps the ranges it was created with: a space file edited since is refused."""
    space = options.space
    kept = stored.get(records.SPACE_DEFINITION)
    now = json.loads(json.dumps(space.definition(options.epochs)))
    if kept is not None and kept != now:
        changed = sorted(k for k in {*kept, *now} if kept.get(k) != now.get(k))
        raise UsageError(
            f"--space {options.space_file}: the file's {', '.join(changed)} changed since "
            f"study {stored.get(records.SPACE, space.name)!r} was created (its trials are only "
            f"comparable under the same ranges); restore the file, or pass a new --study-name."
        )


def _adopt(options: RunOptions, stored: dict[str, Any] | None) -> RunOptions:
    """``options`` with the settings of an existing study for the options not given."""
    if stored is None:
        return options
    changes = {key: stored[key] for key in _ADOPTED
               if key not in options.given and key in stored}
    if changes.get(records.PRECISION) == "bf16" and not fast_bf16_available(options.device):
        logger.warning("this study trains in bf16, which this %s runs without fast bfloat16 "
                       "(slower than usual, the same numbers)", options.device)
    return dataclasses.replace(options, **changes)


def _settings(options: RunOptions) -> dict[str, Any]:
    """The settings a new study keeps (``records.SETTINGS``), and an existing one is checked
    against."""
    space = options.space
    settings = {
        "space": space.name,
        "space_description": space.description,
        "space_definition": space.definition(options.epochs),
        "optimizers": list(space.optimizer_names),
        "epochs": options.epochs,
        "batch_size": options.batch_size,
        "validation": options.validation,
        "train_size": options.train_size,
        "allocation": options.allocation,
        "prune_within": options.prune_within,
        "repeats": options.repeats,
        "precision": options.precision,
        "cohort": options.cohort,
        "lr_grid": list(space.lr_grid) if space.lr_grid else None,
        "seed": options.seed,
        "eval_set": options.eval_set,
        "toolkit_version": toolkit_version(),
    }
    assert set(settings) == set(records.SETTINGS)
    return settings


def _study_seed(optuna_study: optuna.Study, options: RunOptions) -> int:
    """The study's seed, not this worker's: the validation split and every trial's training
    seeds derive from it, the same for every worker and every resume; --seed of a worker
    joining an existing study seeds only its sampler. A study with no seed recorded takes
    this run's, so that the runs after it agree."""
    study_seed = optuna_study.user_attrs.get(records.STUDY_SEED)
    if study_seed is None:
        study_seed = options.seed
        optuna_study.set_user_attr(records.STUDY_SEED, study_seed)
    return study_seed


def _progress(optuna_study: optuna.Study, space: SearchSpace) -> tuple[int, int]:
    """(finished trials, trials of dead workers queued again). A grid counts its points
    done, each once."""
    finished = len(optuna_study.get_trials(deepcopy=False, states=FINISHED))
    if space.grid() is not None:
        finished = space.grid_points_done(optuna_study)
    return finished, len(waiting_retries(optuna_study))


# --- training ----------------------------------------------------------------------------


def _train(
    optuna_study: optuna.Study, options: RunOptions, *, workers: int, study_seed: int,
    finished: int,
) -> tuple[bool, float]:
    """Run trials to the target, here or in ``workers`` worker processes; returns
    (interrupted, wall seconds)."""
    threads = f"{options.threads} thread" + ("s" if options.threads != 1 else "")
    logger.info("study %r in %s: %d of %d trials finished; %s%s on %s (%s, %s set)",
                options.study_name, display_url(options.url), finished, options.target,
                f"{workers} workers x {threads}" if workers > 1 else "training",
                f" in cohorts of up to {options.cohort} trials" if (options.cohort or 1) > 1
                else "",
                options.device, options.precision, options.eval_set)
    if workers > 1:
        # The URL goes to the workers through their environment: a password on their
        # command line would show to every user of the machine.
        return run_workers(
            _without(list(options.argv), ("--workers", "--threads", "--seed", "--storage")),
            optuna_study, workers=workers, threads=options.threads or 1, seed=options.seed,
            target=options.target, finished=finished, storage=options.storage)
    return _train_here(optuna_study, options, study_seed=study_seed, finished=finished)


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


def _train_here(
    optuna_study: optuna.Study, options: RunOptions, *, study_seed: int, finished: int
) -> tuple[bool, float]:
    """Train the remaining trials in this process, one after another."""
    if options.workers > 1 and not options.threads_given:
        # A run meant for several workers with one trial left: every core trains it.
        torch.set_num_threads(cpu_cores())
    data = _training_data(options, split_seed=study_seed)
    optuna_study.sampler = _sampler(optuna_study, options, study_seed=study_seed)
    checkpoints = (checkpoint_folder(options.checkpoints, options.study_name)
                   if options.checkpoints is not None else None)
    propose = _proposer(options, study_seed=study_seed)
    space = options.space
    return run_trials(optuna_study, propose, data, epochs=options.epochs,
                      repeats=options.repeats, target=options.target, finished=finished,
                      show_progress=not options.worker, siblings=options.worker,
                      done=space.grid_points_done if space.grid() else None,
                      checkpoints=checkpoints, keep_checkpoints=options.keep_checkpoints,
                      claim_key=f"{options.url}\n{options.study_name}", url=options.url,
                      make_run=(partial(TrainingRun, model=options.model)
                                if options.model is not None else TrainingRun),
                      cohort=options.cohort or 1,
                      workers=sibling_workers() if options.worker else 1)


def _sampler(
    optuna_study: optuna.Study, options: RunOptions, *, study_seed: int
) -> optuna.samplers.BaseSampler:
    """The sampler this process proposes trials with."""
    grid = options.space.grid()
    if grid is not None:
        # The study's seed, the same in every worker: GridSampler shuffles the grid with
        # it and gives trial k the k-th point, so workers must agree on the order.
        sampler: optuna.samplers.BaseSampler = GridPointSampler(grid, seed=study_seed)
    else:
        sampler = create_sampler(options.sampler, seed=options.seed,
                                 n_existing_trials=len(optuna_study.get_trials(deepcopy=False)))
    if options.allocation == "balanced":
        sampler = BalancedSampler(sampler)
    return sampler


def _proposer(
    options: RunOptions, *, study_seed: int
) -> Callable[[optuna.Trial], TrialConfig]:
    """Trial k's configuration: the space's choice, trained with the seeds from
    ``study_seed + k * repeats``; the trial records how it was chosen."""
    space = options.space
    base = TrialConfig(epochs=options.epochs, batch_size=options.batch_size, seed=study_seed,
                       precision=options.precision)
    chosen_by = ("grid" if space.grid() is not None else "fixed" if space.configs
                 else options.sampler)

    def propose(trial: optuna.Trial) -> TrialConfig:
        seed = study_seed + trial.number * options.repeats
        trial.set_user_attr(records.SAMPLER, chosen_by)
        return space.config_for(trial, base.replace(seed=seed))

    return propose


# --- the end of a run --------------------------------------------------------------------


def _report(
    storage: optuna.storages.BaseStorage, options: RunOptions, *, interrupted: bool,
    wall_seconds: float,
) -> int:
    """Print the summary (a worker prints nothing: its parent does); returns the exit code,
    130 when interrupted."""
    if options.worker:
        return 130 if interrupted else 0
    print(_summary(storage, options, wall_seconds))
    if interrupted:
        print(f"Interrupted by {STOP.name or 'Ctrl-C'}: the trials in training were marked "
              f"failed, finished ones are kept. Run the same command to continue to "
              f"{options.target} finished trials.")
        return 130
    return 0


def _summary(
    storage: optuna.storages.BaseStorage, options: RunOptions,
    wall_seconds: float | None = None,
) -> str:
    shown_url = display_url(options.url)
    return summarize(storage, options.study_name, target=options.target, shown_url=shown_url,
                     storage_option=options.storage and shown_url, wall_seconds=wall_seconds)


if __name__ == "__main__":
    code = main()
    # A late Ctrl-C (a second one, while the process exits) changes nothing now.
    for _signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_signal, signal.SIG_IGN)
    sys.exit(code)
