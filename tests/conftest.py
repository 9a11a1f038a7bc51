"""Shared fixtures: tiny synthetic tensors for speed, the real MNIST where behaviour needs it."""

from __future__ import annotations

import os

import matplotlib
import pytest
import torch

from study.data import Dataset, load_mnist

matplotlib.use("Agg")


def make_tiny_dataset(n_train: int = 256, n_eval: int = 128, seed: int = 0) -> Dataset:
    """Ten Gaussian blobs in 784 dimensions: learnable in a few updates."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(10, 784, generator=g)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=g)
        x = centres[y] + 0.5 * torch.randn(n, 784, generator=g)
        return x, y

    train_x, train_y = sample(n_train)
    eval_x, eval_y = sample(n_eval)
    return Dataset(train_x, train_y, eval_x, eval_y, eval_x, eval_y, eval_set="test")


@pytest.fixture
def tiny_data() -> Dataset:
    return make_tiny_dataset()


@pytest.fixture(scope="session")
def mnist() -> Dataset:
    return load_mnist()


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty folder, so ``studies/`` lands in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A PostgreSQL URL from STUDY_TEST_POSTGRES_URL; skipped when unset, unless
    STUDY_REQUIRE_POSTGRES=1 (CI), where a missing server fails the test."""
    url = os.environ.get("STUDY_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("STUDY_REQUIRE_POSTGRES") == "1":
            pytest.fail("STUDY_REQUIRE_POSTGRES=1 but STUDY_TEST_POSTGRES_URL is not set")
        pytest.skip("set STUDY_TEST_POSTGRES_URL to run the PostgreSQL tests")
    return url
