"""Write the EE-559 course's project folder: ``DIR/Miniproject_1`` and ``DIR/Miniproject_2``.

Each holds ``__init__.py``, a thin ``model.py`` that imports the model (and, for project
2, the course's module names) from :mod:`denoise.ee559`, and ``bestmodel.pth``: the
shipped weights as a ``torch.save`` state dict of tensors (loadable with
``weights_only=True``), which ``Model.load_pretrained_model()`` reads from beside
``model.py``. The folder works wherever ``denoise`` is installed, without network access.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

from .. import __version__
from ..errors import ModelError, OutputError
from ..utils import write_text
from .course import load_state, shipped_weights
from .data import save_torch

__all__ = ["export_project", "PROJECTS", "FILES"]

#: The files of each project folder.
FILES = ("__init__.py", "model.py", "bestmodel.pth")

_HEADER = '''"""EE-559 mini-project {number}: {what}.

Written by `denoise ee559 export` (denoise {version}); the code lives in the denoise
package ({module}). Model.load_pretrained_model() reads the
bestmodel.pth beside this file.
"""
from pathlib import Path

'''

_MODEL = '''

class Model({base}):
    """The mini-project's model; load_pretrained_model() reads this folder's bestmodel.pth."""

    bestmodel = Path(__file__).with_name("bestmodel.pth")
'''

#: Project number -> (module, description, extra names that model.py re-exports).
PROJECTS = {
    1: ("denoise.ee559.project1", "a Noise2Noise U-Net in PyTorch", ()),
    2: ("denoise.ee559.project2", "the same task with a framework without autograd",
        ("Conv2d", "TransposeConv2d", "NearestUpsampling", "Upsampling", "ReLU", "Sigmoid",
         "MSE", "SGD", "Sequential")),
}


def model_source(number: int) -> str:
    """The text of ``Miniproject_N/model.py``."""
    module, what, names = PROJECTS[number]
    text = _HEADER.format(number=number, what=what, version=__version__, module=module)
    text += f"from {module} import Model as _Model\n"
    if names:
        listed = textwrap.fill(", ".join(names), width=92, initial_indent="    ",
                               subsequent_indent="    ")
        text += f"from {module} import (  # noqa: F401 (the course's names)\n{listed},\n)\n"
        quoted = textwrap.fill(", ".join(f'"{n}"' for n in ("Model", *names)), width=92,
                               initial_indent="    ", subsequent_indent="    ")
        text += f"\n__all__ = [\n{quoted},\n]\n"
    return text + _MODEL.format(base="_Model")


def _weights_name(number: int) -> str:
    import importlib

    return importlib.import_module(PROJECTS[number][0]).Model.weights_name


def export_project(root: str | Path, *, overwrite: bool = False) -> Path:
    """Write the project folder ``root`` (created if missing) and return it.

    Every file is checked before anything is written: an existing one is an error
    unless ``overwrite``; missing shipped weights are a ModelError.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise OutputError(f"{root} exists and is not a folder")
    states = {}
    for number in PROJECTS:
        path = shipped_weights(_weights_name(number))
        if not path.is_file():
            raise ModelError(f"mini-project {number} has no shipped weights ({path}); train them "
                             f"with 'denoise ee559 train {number}' first")
        states[number] = load_state(path)
    targets = [root / f"Miniproject_{n}" / name for n in PROJECTS for name in FILES]
    existing = [str(p.relative_to(root)) for p in targets if p.exists()]
    if existing and not overwrite:
        raise OutputError(f"{root} already holds {', '.join(existing[:3])}"
                              f"{' and more' if len(existing) > 3 else ''}; pass --force to replace")
    for number, state in states.items():
        folder = root / f"Miniproject_{number}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {folder}: {exc.strerror or exc}") from None
        write_text(folder / "__init__.py", "")
        write_text(folder / "model.py", model_source(number))
        save_torch(state, folder / "bestmodel.pth", overwrite=True)
    return root
