from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import torch

from study.train.data import (
    DATA_DIR_ENV,
    MNIST_FILES,
    PACKAGED_ROOT,
    DataError,
    check_files,
    data_root,
    iter_batches,
    load_mnist,
    read_idx,
)


def test_real_mnist_loads_normalised(mnist):
    assert mnist.train_x.shape == (60000, 784) and mnist.train_y.shape == (60000,)
    assert mnist.test_x.shape == (10000, 784) and mnist.eval_set == "test"
    assert mnist.train_x.dtype == torch.float32 and mnist.train_y.dtype == torch.int64
    assert abs(mnist.train_x.mean().item()) < 0.01
    assert abs(mnist.train_x.std().item() - 1.0) < 0.01
    assert torch.bincount(mnist.test_y).tolist()[:2] == [980, 1135]  # official class counts


def test_loaded_once_per_process():
    assert load_mnist() is load_mnist()


def test_validation_split_is_held_out_of_training():
    data = load_mnist(validation_fraction=0.1, split_seed=3)
    assert data.eval_set == "validation"
    assert data.train_x.shape[0] == 54000 and data.eval_x.shape[0] == 6000
    assert data.test_x.shape[0] == 10000


def test_train_size_keeps_the_first_examples(mnist):
    data = load_mnist(train_size=1000)
    assert data.num_train == 1000
    torch.testing.assert_close(data.train_x, mnist.train_x[:1000])


@pytest.fixture
def data_copy(tmp_path):
    for name in MNIST_FILES:
        shutil.copy(PACKAGED_ROOT / name, tmp_path / name)
    return tmp_path


def test_corrupt_file_names_the_file_the_expected_md5_and_the_fix(data_copy):
    target = data_copy / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(target.read_bytes()))
    raw[100] ^= 0xFF
    target.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError) as err:
        load_mnist(data_copy)
    message = str(err.value)
    assert str(target) in message
    assert MNIST_FILES["t10k-labels-idx1-ubyte.gz"] in message
    assert "--data-dir" in message and "STUDY_DATA_DIR" in message
    assert "\n" not in message


def test_the_data_folder_comes_from_the_argument_then_the_environment_then_the_package(
    data_copy, monkeypatch
):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert data_root() == PACKAGED_ROOT
    monkeypatch.setenv(DATA_DIR_ENV, str(data_copy))
    assert data_root() == data_copy
    assert data_root("elsewhere") == Path("elsewhere")
    (data_copy / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz is missing"):
        check_files()  # read from $STUDY_DATA_DIR, not the packaged copy


def test_a_broken_packaged_copy_says_how_to_reinstall_it(tmp_path, monkeypatch):
    monkeypatch.setattr("study.train.data.PACKAGED_ROOT", tmp_path)
    with pytest.raises(DataError) as err:
        read_idx(tmp_path / "train-labels-idx1-ubyte.gz")
    message = str(err.value)
    assert "pip install --force-reinstall" in message and "--data-dir" in message


def test_missing_and_non_gzip_files_are_data_errors(data_copy):
    (data_copy / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz is missing"):
        load_mnist(data_copy)
    (data_copy / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="not a readable gzip file"):
        read_idx(data_copy / "train-labels-idx1-ubyte.gz", "x")


def test_batches_are_a_seeded_permutation_covering_every_example():
    x = torch.arange(10).float().unsqueeze(1)
    y = torch.arange(10)
    batches = list(iter_batches(x, y, 4, torch.Generator().manual_seed(0)))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == list(range(10))
    again = list(iter_batches(x, y, 4, torch.Generator().manual_seed(0)))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again, strict=True))
