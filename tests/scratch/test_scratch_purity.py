"""The scratch package uses tensor operations only: no torch.nn module, no autograd.

The rule, checked on the syntax tree of every ``.py`` file of ``src/denoise/scratch`` and
its sub-packages (``kernels/``):

1. Imports: ``import torch`` (unaliased), ``from torch.nn.functional import fold, unfold``,
   the standard library modules listed in ``STDLIB`` and relative imports of the
   ``denoise`` package. Any other import (``torch.nn``, ``torch.autograd``, ``torch.func``,
   ``functorch``, ``numpy``, ...) fails.
2. Every attribute chain that starts at ``torch`` must be a tensor operation of
   ``TORCH_ALLOWED`` (creation, concatenation, matrix products, dtypes), or
   ``torch.nn.functional.fold`` / ``unfold``.
3. No attribute anywhere may be an autograd hook (``requires_grad``, ``grad_fn``,
   ``detach``, ``no_grad``, ``set_grad_enabled``, ...) or a tensor method that would do a
   layer's work (``relu``, ``sigmoid``, ``tanh``, ``conv2d``, ``max_pool2d``, ...).

The checker is itself tested on snippets that break each rule.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import denoise.scratch

PACKAGE = Path(denoise.scratch.__file__).parent

STDLIB = {"__future__", "math", "threading", "dataclasses", "typing", "collections"}

TORCH_ALLOWED = {
    "Tensor", "Size", "Generator", "dtype", "device", "float16", "float32", "float64", "bfloat16",
    "uint8", "int8", "int16", "int32", "int64", "bool", "get_default_dtype",
    "empty", "empty_like", "zeros", "zeros_like", "ones", "ones_like", "full", "full_like",
    "tensor", "as_tensor", "arange", "cat", "stack", "mm", "addmm", "matmul", "bmm", "baddbmm", "add", "mul",
}

FORBIDDEN_ATTRIBUTES = {
    # autograd
    "autograd", "func", "requires_grad", "requires_grad_", "grad_fn", "retain_grad", "register_hook",
    "detach", "detach_", "no_grad", "enable_grad", "set_grad_enabled", "inference_mode",
    "is_grad_enabled",
    # tensor methods (or functions) that would do a layer's work
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "prelu", "leaky_relu", "hardtanh",
    "threshold", "softplus", "conv1d", "conv2d", "conv_transpose2d", "convolution", "max_pool2d",
    "max_pool2d_with_indices", "interpolate", "upsample_nearest2d", "mse_loss", "l1_loss",
}


def _chain(node: ast.AST) -> list[str] | None:
    """``torch.nn.functional.fold`` -> ["torch", "nn", "functional", "fold"] (None otherwise)."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id] + names[::-1]
    return None


def violations(source: str) -> list[str]:
    """Every break of the rule in ``source`` (one message per break)."""
    found = []
    tree = ast.parse(source)
    inner = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    for node in ast.walk(tree):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "torch" and alias.asname is None:
                    continue
                if alias.name.split(".")[0] not in STDLIB:
                    found.append(f"{where}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            if node.level > 0:  # relative: the denoise package itself
                continue
            names = {alias.name for alias in node.names}
            if node.module == "torch.nn.functional" and names <= {"fold", "unfold"}:
                continue
            if (node.module or "").split(".")[0] not in STDLIB:
                found.append(f"{where}: from {node.module} import {', '.join(sorted(names))}")
        elif isinstance(node, ast.Attribute):
            if node.attr in FORBIDDEN_ATTRIBUTES:
                found.append(f"{where}: .{node.attr}")
            chain = None if id(node) in inner else _chain(node)  # outermost chains only
            if chain and chain[0] == "torch":
                if chain[1:] in (["nn", "functional", "fold"], ["nn", "functional", "unfold"]):
                    continue
                if chain[1] not in TORCH_ALLOWED:
                    found.append(f"{where}: {'.'.join(chain)}")
    return found


def _package_files() -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 8, f"expected the scratch modules in {PACKAGE}"
    assert PACKAGE / "kernels" / "reference.py" in files, "the kernels sub-package is scanned too"
    return files


@pytest.mark.parametrize("path", _package_files(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_scratch_module_uses_tensor_operations_only(path):
    assert violations(path.read_text()) == []


@pytest.mark.parametrize("snippet", [
    "import torch.nn as nn",
    "from torch import nn",
    "import torch.nn.functional as F",
    "from torch.nn.functional import conv2d",
    "import numpy",
    "import torch as T",
    "y = torch.nn.Conv2d(1, 1, 1)",
    "y = torch.nn.functional.conv2d(x, w)",
    "y = torch.conv2d(x, w)",
    "y = torch.sigmoid(x)",
    "torch.autograd.grad(y, x)",
    "x.requires_grad_()",
    "x = x.detach()",
    "with torch.no_grad(): pass",
    "y = x.relu()",
    "y = torch.func.vjp(f, x)",
])
def test_checker_catches(snippet):
    assert violations(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "import torch",
    "from torch.nn.functional import fold, unfold",
    "y = torch.nn.functional.unfold(x, 3)",
    "y = torch.addmm(b, a, w, out=o)",
    "from .module import Module",
    "y = x.clamp_min(0).exp_()",
])
def test_checker_allows(snippet):
    assert violations(snippet) == []
