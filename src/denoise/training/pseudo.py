"""The ``pseudo`` objective of ``denoise fit`` (:mod:`.fit`): self-training targets.

The base denoises the photos once (:func:`pseudo_clean`), and its outputs are the clean
images of an ordinary supervised run whose noise is the one the base was trained with
(:func:`base_noise`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import torch

from ..errors import ModelError
from .config import TrainConfig
from .runlog import CHECKPOINT

#: The ``pseudo`` objective's noise when the base does not record the camera noise it was
#: trained with: the noise of the ``real-*`` models, by channel count.
PSEUDO_NOISE = {3: "camera:shot=0.0001-0.05,q=80-100,corr=0-1.5,chroma=0-1,cblur=0-4,sharp=0-1,tone=0-1",
                1: "camera:q=80-100,corr=0-1.5:mosaic"}


def base_noise(base, channels: int) -> str:
    """The noise spec ``base`` (a :class:`~.fit.Base`) was trained with, as its card or its run's configuration
    records it, when it is one (not ``none``); else :data:`PSEUDO_NOISE` for ``channels``."""
    import json

    from ..models.registry import get_entry
    from ..training.config import NO_NOISE

    noise = None
    try:
        if base.init is None:
            pass
        elif Path(base.init).suffix == ".safetensors":
            noise = json.loads(Path(base.init).with_suffix(".json").read_text()).get("noise")
        elif Path(base.init).exists():
            path = Path(base.init)
            ckpt = torch.load(path / CHECKPOINT if path.is_dir() else path, map_location="cpu", weights_only=True)
            noise = json.loads(ckpt["config"]).get("noise")
        else:
            noise = (get_entry(base.init).card() or {}).get("noise")
    except (OSError, ValueError, KeyError, RuntimeError, ModelError):
        noise = None
    if not isinstance(noise, str) or noise in NO_NOISE:
        return PSEUDO_NOISE[channels]
    return noise


@torch.no_grad()
def pseudo_clean(config: TrainConfig, images: Sequence[torch.Tensor], channels: int) -> list[torch.Tensor]:
    """The base's (``config.init``) outputs on ``images``: the clean images of a ``pseudo`` fit."""
    from ..inference import restore
    from .build import build_model

    base = build_model(dataclasses.replace(config, init_deepen=False), channels).eval()
    return [restore(x[None], base, device="cpu").output[0] for x in images]
