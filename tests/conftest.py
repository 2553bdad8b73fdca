"""Shared fixtures: the real-image data folder, a seeded random generator, the benchmark
scripts as modules and small synthetic image folders."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from denoise.evaluation import testsets as datasets


@pytest.fixture(scope="session")
def data_root():
    """The folder of real images (Set12, BSD68, ...); skips the test when there is none."""
    root = datasets.data_root()
    if root is None:
        pytest.skip(f"real images not found: set {datasets.ENV_VAR} or place them in ../shared/data")
    return root


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU torch.Generator seeded with 0, fresh for each test."""
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """Small models on a shared 2-core machine: one thread avoids oversubscription.
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def benchmark_script():
    """``benchmark_script("gates_claim")`` imports ``benchmarks/gates_claim.py`` as a module,
    registered in ``sys.modules`` until the test module ends (dataclasses look their
    module up there)."""
    loaded = []

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        loaded.append(name)
        spec.loader.exec_module(module)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)


def write_synthetic_folder(path: Path, count: int, size: int, seed: int) -> None:
    """``count`` smooth color PNGs of ``size`` x ``size`` with a little noise, in ``path``."""
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(count):
        base = 0.5 + 0.3 * np.sin(6 * xx + i) * np.cos(4 * yy)
        image = np.stack([base, base * 0.8, 1 - base], -1) + 0.05 * rng.standard_normal((size, size, 3))
        Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path / f"{i:02d}.png")


@pytest.fixture
def synthetic_folder():
    """:func:`write_synthetic_folder`, for tests that build a small data folder."""
    return write_synthetic_folder


@pytest.fixture(scope="module")
def tiny_sets(data_root, tmp_path_factory) -> tuple[Path, Path]:
    """Two folders of two real images each (Set12 gray, CBSD68 color), cropped to 40 x 40:
    the results report's test sets."""
    from denoise.evaluation.bench import load_test_set
    from denoise.io import write_image

    folders = []
    for source, name in (("Set12", "tinygray"), ("CBSD68", "tinycolor")):
        if not (data_root / source).is_dir():
            pytest.skip(f"{source} not found in {data_root}")
        folder = tmp_path_factory.mktemp("sets") / name
        folder.mkdir()
        for stem, x in load_test_set(source, max_images=2)[1]:
            write_image(folder / f"{stem}.png", x[..., :40, :40])
        folders.append(folder)
    return folders[0], folders[1]
