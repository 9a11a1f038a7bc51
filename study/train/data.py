"""MNIST from the IDX files shipped inside the package (``study/mnist/``), as tensors on the
device; or your own classification tensors in the same form (:func:`tensor_dataset`).

Where the files are read from: the ``root`` argument (``--data-dir``), else the folder named
by the ``STUDY_DATA_DIR`` environment variable, else the copy installed with the package
(:data:`PACKAGED_ROOT`), so an installed toolkit works from any folder.

Loaded once per process (per root, device and validation split), MD5-checked, normalised
with the usual MNIST mean and std (0.1307, 0.3081). Batches are index slices of a seeded
permutation (:func:`iter_batches`); there is no per-sample ``Dataset`` on the hot path.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DataError",
    "MNIST_FILES",
    "PACKAGED_ROOT",
    "MNIST_TRAIN",
    "DATA_DIR_ENV",
    "data_root",
    "MEAN",
    "STD",
    "Dataset",
    "read_idx",
    "check_files",
    "load_mnist",
    "tensor_dataset",
    "epoch_permutation",
    "iter_batches",
]

MEAN, STD = 0.1307, 0.3081
#: The four files as installed with the package (11 MB of package data).
PACKAGED_ROOT = Path(__file__).resolve().parent.parent / "mnist"
#: Training images in MNIST (before any validation split).
MNIST_TRAIN = 60_000
#: Environment variable naming another folder with the four files.
DATA_DIR_ENV = "STUDY_DATA_DIR"

#: file name -> MD5 of its uncompressed content (the official IDX files).
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
}


class DataError(RuntimeError):
    """A data file is missing, corrupt or not an IDX file; or tensors given as a dataset are
    not a classification set (see :func:`tensor_dataset`)."""


def data_root(root: str | Path | None = None) -> Path:
    """The folder the MNIST files are read from: ``root`` if given, else
    ``$STUDY_DATA_DIR`` if set, else the copy installed with the package."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else PACKAGED_ROOT


def _restore(path: Path) -> str:
    """How to get a good copy of ``path`` back: the fix depends on where it was read from."""
    folder = path.resolve().parent
    names = ", ".join(MNIST_FILES)
    point = (f"point --data-dir (or the {DATA_DIR_ENV} environment variable) at a folder "
             f"holding the four files ({names})")
    if folder == PACKAGED_ROOT:
        return (f"this is the copy shipped with the package: reinstall the toolkit as you "
                f"installed it (`pip install --force-reinstall --no-deps <wheel or source "
                f"folder>`; in a clone, `git checkout -- study/mnist`), or {point}")
    return f"{point}; without either the copy shipped with the package in {PACKAGED_ROOT} is used"


@dataclass(frozen=True)
class Dataset:
    """Classification tensors on one device: normalised MNIST (:func:`load_mnist`), or your
    own (:func:`tensor_dataset`).

    ``train_*`` is what the optimizer sees; ``eval_*`` is what is measured every epoch: the
    test set, or a validation split held out of the training set (then ``eval_set`` is
    ``"validation"`` and ``test_*`` is measured once at the end). ``num_classes`` is the
    number of classes the labels can take (10 for MNIST): chance accuracy is 1 / it.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    eval_x: torch.Tensor
    eval_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    eval_set: str
    num_classes: int = 10

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    @property
    def num_train(self) -> int:
        return self.train_x.shape[0]

    def train_inputs(self, dtype: torch.dtype) -> torch.Tensor:
        """``train_x`` in ``dtype``, made once per dataset and kept (a bfloat16 copy of the
        60,000 training images is 94 MB): the values autocast would give each batch, cast
        once instead of at every update."""
        if dtype == self.train_x.dtype:
            return self.train_x
        cache = self.__dict__.setdefault("_inputs", {})  # frozen: not through setattr
        if dtype not in cache:
            cache[dtype] = self.train_x.to(dtype)
        return cache[dtype]


def read_idx(path: Path, expected_md5: str | None = None) -> np.ndarray:
    """Read one gzip-compressed IDX file into a uint8 array, checking its MD5.

    Raises:
        DataError: missing file, unreadable gzip, wrong MD5 or a malformed header; the
            message names the file (absolute path), the expected MD5 and how to restore it.
    """
    path = Path(path).absolute()
    if not path.is_file():
        raise DataError(f"MNIST file {path} is missing; {_restore(path)}.")
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as exc:
        raise DataError(
            f"MNIST file {path} is not a readable gzip file ({exc}); expected uncompressed"
            f" MD5 {expected_md5}; {_restore(path)}."
        ) from None
    if expected_md5 is not None:
        actual = hashlib.md5(raw).hexdigest()
        if actual != expected_md5:
            raise DataError(
                f"MNIST file {path} is corrupt: uncompressed MD5 {actual}, expected"
                f" {expected_md5}; {_restore(path)}."
            )
    # IDX header: two zero bytes, a type code (0x08 = uint8), the number of dimensions,
    # then one big-endian int32 per dimension.
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"MNIST file {path} is not a uint8 IDX file; {_restore(path)}.")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(shape)):
        raise DataError(f"MNIST file {path} is truncated for shape {shape}; {_restore(path)}.")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


def _normalise(images: np.ndarray) -> torch.Tensor:
    # In place: one float32 copy of the images at a time (188 MB for the training set).
    x = torch.from_numpy(images.reshape(images.shape[0], -1).astype(np.float32))
    return x.div_(255.0).sub_(MEAN).div_(STD)


def check_files(root: str | Path | None = None) -> None:
    """Check the four MNIST files in ``root`` (default: :func:`data_root`) without building any
    tensor: each is read, decompressed and MD5-checked.

    Raises:
        DataError: a file is missing or corrupt; the message names it and the fix.
    """
    root = data_root(root)
    for name, md5 in MNIST_FILES.items():
        read_idx(root / name, md5)


@functools.lru_cache(maxsize=4)
def _load_cpu(root: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    arrays = {name: read_idx(root / name, md5) for name, md5 in MNIST_FILES.items()}
    return (
        _normalise(arrays["train-images-idx3-ubyte.gz"]),
        torch.from_numpy(arrays["train-labels-idx1-ubyte.gz"].astype(np.int64)),
        _normalise(arrays["t10k-images-idx3-ubyte.gz"]),
        torch.from_numpy(arrays["t10k-labels-idx1-ubyte.gz"].astype(np.int64)),
    )


@functools.lru_cache(maxsize=4)
def _load(
    root: Path, device: str, validation_fraction: float, split_seed: int, train_size: int | None
) -> Dataset:
    return tensor_dataset(*_load_cpu(root), device=device,
                          validation_fraction=validation_fraction, split_seed=split_seed,
                          train_size=train_size, num_classes=10)


def load_mnist(
    root: str | Path | None = None,
    *,
    device: str | torch.device = "cpu",
    validation_fraction: float = 0.0,
    split_seed: int = 0,
    train_size: int | None = None,
) -> Dataset:
    """MNIST as normalised tensors on ``device``, read once per process.

    Args:
        root: folder with the four ``*.gz`` IDX files; default ``$STUDY_DATA_DIR``, else the
            copy installed with the package.
        device: where the tensors live (training runs there without host copies).
        validation_fraction: share of the training set held out as the per-epoch
            evaluation set; 0 evaluates on the test set every epoch.
        split_seed: seeds the validation split.
        train_size: train on only the first ``train_size`` training examples (after the
            validation split), for quick runs; ``None`` keeps them all.

    Raises:
        DataError: a file is missing or corrupt.
        ValueError: ``validation_fraction`` outside [0, 0.5] or ``train_size`` < 1.
    """
    _check_split(validation_fraction, train_size)
    root = data_root(root)
    return _load(
        root.resolve(), str(torch.device(device)), float(validation_fraction), split_seed,
        train_size,
    )


def _check_split(validation_fraction: float, train_size: int | None) -> None:
    if not 0.0 <= validation_fraction <= 0.5:
        raise ValueError(
            f"validation_fraction must be in [0, 0.5], but got {validation_fraction=}."
        )
    if train_size is not None and train_size < 1:
        raise ValueError(f"train_size must be >= 1 or None, but got {train_size=}.")


def _check_tensors(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
    num_classes: int,
) -> None:
    """Inputs with one row per label, of one shape; integer labels in [0, num_classes)."""
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if not x.is_floating_point() or y.dtype != torch.int64 or y.ndim != 1:
            raise DataError(f"{name}_x must be floating point and {name}_y 1-d int64 class "
                            f"labels, but got {x.dtype} and {y.dtype} of shape "
                            f"{tuple(y.shape)}; convert with .float() and .long().")
        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise DataError(f"{name}_x has {x.shape[0]} rows and {name}_y {y.shape[0]} labels; "
                            "give one label per row, and at least one row.")
        if int(y.min()) < 0 or int(y.max()) >= num_classes:
            raise DataError(f"{name}_y has labels {int(y.min())} to {int(y.max())}, but "
                            f"num_classes is {num_classes}; labels must be 0 to "
                            f"{num_classes - 1}.")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"train_x rows have shape {tuple(train_x.shape[1:])} and test_x rows "
                        f"{tuple(test_x.shape[1:])}; the model takes one shape.")


def tensor_dataset(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    device: str | torch.device | None = None,
    validation_fraction: float = 0.0,
    split_seed: int = 0,
    train_size: int | None = None,
    num_classes: int | None = None,
) -> Dataset:
    """Your own classification tensors as a :class:`Dataset`, split like :func:`load_mnist`.

    Args:
        train_x, test_x: floating-point inputs, one example per row (any shape the model
            takes); normalise them yourself.
        train_y, test_y: int64 class labels, 0 to ``num_classes - 1``.
        device: where the tensors live; default: ``train_x``'s device.
        validation_fraction, split_seed, train_size: as :func:`load_mnist`.
        num_classes: the number of classes; default: the largest label + 1.

    Raises:
        DataError: the tensors are not a classification set, or ``train_size`` is more
            than the training rows left after the validation share.
        ValueError: ``validation_fraction`` outside [0, 0.5] or ``train_size`` < 1.
    """
    _check_split(validation_fraction, train_size)
    num_classes = num_classes or 1 + int(max(train_y.max(), test_y.max()))
    _check_tensors(train_x, train_y, test_x, test_y, num_classes)
    if validation_fraction > 0:
        n_val = max(1, round(validation_fraction * train_x.shape[0]))
        generator = torch.Generator().manual_seed(split_seed)
        perm = torch.randperm(train_x.shape[0], generator=generator).to(train_x.device)
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        eval_x, eval_y = train_x[val_idx], train_y[val_idx]
        train_x, train_y = train_x[train_idx], train_y[train_idx]
        eval_set = "validation"
    else:
        eval_x, eval_y, eval_set = test_x, test_y, "test"
    if train_size is not None and train_size > train_x.shape[0]:
        raise DataError(f"train_size {train_size}: there are {train_x.shape[0]} training "
                        "rows (after any validation share); give at most that many.")
    if train_size is not None:
        train_x, train_y = train_x[:train_size], train_y[:train_size]
    dev = torch.device(device) if device is not None else train_x.device
    return Dataset(train_x=train_x.to(dev), train_y=train_y.to(dev), eval_x=eval_x.to(dev),
                   eval_y=eval_y.to(dev), test_x=test_x.to(dev), test_y=test_y.to(dev),
                   eval_set=eval_set, num_classes=num_classes)


def iter_batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled mini-batches: slices of a fresh permutation drawn from ``generator``.

    The last batch is smaller when ``batch_size`` does not divide the set (like
    ``DataLoader(drop_last=False)``).
    """
    perm = epoch_permutation(x.shape[0], generator, x.device)
    for start in range(0, x.shape[0], batch_size):
        idx = perm[start : start + batch_size]
        yield x.index_select(0, idx), y.index_select(0, idx)


def epoch_permutation(
    n: int, generator: torch.Generator, device: torch.device | str
) -> torch.Tensor:
    """The epoch's order of the ``n`` training examples, drawn from ``generator`` (on its own
    device) and moved to ``device``: :func:`iter_batches` slices it into batches."""
    perm = torch.randperm(n, generator=generator, device=generator.device)
    return perm if perm.device == torch.device(device) else perm.to(device)
