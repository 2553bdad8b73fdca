"""EE-559 mini-project 1: a Noise2Noise denoiser built with PyTorch.

The network is the registered model ``ee559-project1``: the project's ``unet-small``
(:class:`denoise.models.unet.SmallUNet`: a four-level U-Net with PReLU and a sigmoid
output, 32 base features), the best of the project's torch models whose training epoch
on the course's 50,000 crops of 32x32 fits the course's time limit on two CPU cores
(``benchmarks/ee559_epoch_time.py``). Its keyword arguments and shipped weights are the
registry's (:mod:`denoise.models.registry`), so ``denoise.denoise(x, "ee559-project1")``
runs the same network. It is trained with noisy targets only (Noise2Noise), L2 loss, Adam
and channels-last memory layout; see :mod:`denoise.ee559.course` for the API and the
epoch loop.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import ModelError
from ..models.registry import create_model, load_weights
from ..training.losses import l2_loss
from .course import CourseModel

__all__ = ["Model", "REGISTERED_NAME"]

#: The registry's name of the network and its shipped weights.
REGISTERED_NAME = "ee559-project1"


class Model(CourseModel):
    """The course's ``Model`` for mini-project 1 (``unet-small``, Adam, L2 loss)."""

    weights_name = REGISTERED_NAME

    def __init__(self, *, batch_size: int = 32, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.99),
                 seed: int = 0, device: str | torch.device | None = None) -> None:
        super().__init__(batch_size=batch_size, lr=lr, seed=seed, device=device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the same initial weights for every Model(seed=...)
            self.net = create_model(REGISTERED_NAME, pretrained=False)
        self.net = self.net.to(self.device, memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr, betas=betas)

    def _set_mode(self, training: bool) -> None:
        self.net.train(training)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=torch.channels_last))

    def _train_step(self, inp: torch.Tensor, tgt: torch.Tensor, lr: float) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = l2_loss(self._forward(inp), tgt)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def _load_weights(self, path: Path) -> None:
        # safetensors (the shipped weights) load as every registered model's do
        if path.suffix == ".safetensors":
            load_weights(self.net, path)
        else:
            super()._load_weights(path)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        own = self.net.state_dict()
        missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        bad = [k for k in own if k in state and state[k].shape != own[k].shape]
        if missing or extra or bad:
            raise ModelError(f"the weights do not fit {REGISTERED_NAME}: missing {missing[:3]}, "
                             f"unexpected {extra[:3]}, wrong shapes {bad[:3]}")
        self.net.load_state_dict(state)
