"""Precise batch-norm statistics: the running means and variances a network uses in
inference, recomputed as exact averages over many training batches.

During training each batch-norm layer keeps an exponential moving average of its batch
statistics (momentum 0.1: in effect the last ten or so batches). When the batches differ
a lot, as with a noise level drawn per image from [0, 75], that average wanders from one
checkpoint to the next, and inference with it is worse than the weights allow. Averaging
the statistics of a few hundred batches of the training distribution, with the weights
fixed, removes that wander ("precise BN"). Nothing else changes: no weight is trained, and
the batches come from the training images only, with their training noise.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError

#: Batches averaged by default (6400 crops at the shipped recipes' batch of 32).
DEFAULT_BATCHES = 200


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def precise_bn(model: nn.Module, data, batches: int = DEFAULT_BATCHES, *, batch_size: int = 32,
               seed: int = 0, progress: bool = False) -> nn.Module:
    """Recompute the running statistics of every batch-norm layer of ``model`` (in place)
    as the mean over ``batches`` batches of ``data.sample(batch_size, generator)``; the
    model is left in eval mode. InputError when it has no batch norm."""
    from tqdm.auto import tqdm

    norms = batch_norms(model)
    if not norms:
        raise InputError("the model has no batch-norm layer: there are no statistics to recompute")
    if batches < 1 or batch_size < 1:
        raise InputError("precise batch-norm statistics need at least one batch of at least one crop")
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: every batch weighs the same
    uses_sigma = bool(getattr(model, "uses_sigma", False))
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    model.train()
    try:
        for _ in tqdm(range(batches), desc="batch-norm statistics", unit="batch", disable=None if progress else True):
            batch = data.sample(batch_size, generator)
            x = batch.input.to(device)
            if uses_sigma:
                model(x, batch.sigma.to(device))
            else:
                model(x)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return model


@torch.no_grad()
def validation_psnr(model: nn.Module, data) -> float | None:
    """Mean PSNR (dB) of the model's clipped outputs on the data's held-out images (None
    without any)."""
    from ..metrics import psnr

    pairs = data.validation_with_sigma() if hasattr(data, "validation_with_sigma") else []
    if not pairs:
        return None
    uses_sigma = bool(getattr(model, "uses_sigma", False))
    model.eval()
    values = []
    for noisy, ref, sigma in pairs:
        out = model(noisy, sigma) if uses_sigma else model(noisy)
        values.append(float(psnr(out.clamp(0, 1), ref)[0]))
    return sum(values) / len(values)
