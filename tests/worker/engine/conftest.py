from __future__ import annotations

from pathlib import Path

import pytest

from oracle.digits import DigitScenes, generate


@pytest.fixture(scope="session")
def digit_scenes(tmp_path_factory: pytest.TempPathFactory) -> DigitScenes:
    return generate(tmp_path_factory.mktemp("digits"), train_images=48, test_images=16, size=128, seed=0)


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    import torch

    torch.set_num_threads(2)


__all__ = ["Path"]
