"""Sliding-window DCT denoising with one learned threshold per DCT frequency.

:class:`DCTDenoiser` sets to zero every coefficient below ``2.7 * sigma`` whatever its
frequency. :class:`LearnedDCTDenoiser` gives frequency ``k`` of the ``N x N`` DCT its own
threshold ``T_k = r_k * sigma`` (``r`` holds ``N * N`` multiples of sigma; the DC,
``r[0]``, is never thresholded). At inference (eval mode, or without gradients) it is
exactly ``DCTDenoiser`` in hard mode with ``r_k`` in place of the single 2.7.

Hard thresholding has no useful gradient with respect to its threshold, so the ``r_k``
are learned through the differentiable hard threshold of the course practical,
:func:`smooth_hard_threshold`, whose temperature ``lambda`` is annealed towards 0 (from
a soft ramp to hard thresholding) during training. In train mode with gradients enabled
the model uses it with ``lambda = temperature * sigma``; ``benchmarks/dct_learned.py``
anneals ``temperature`` and writes the shipped ``dct-learned`` weights.

:func:`fit_threshold` is the practical's toy: recover the threshold of a hard-thresholded
sample from (input, output) pairs by gradient descent with an annealed ``lambda``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .dct import DCTDenoiser
from .registry import register_model, register_weights

#: The single threshold (a multiple of sigma) of ``dct``; the learned ones start from it.
BASELINE_R = 2.7


def smooth_hard_threshold(x: torch.Tensor, t: torch.Tensor | float, lam: torch.Tensor | float
                          ) -> torch.Tensor:
    """The differentiable hard threshold of the course practical:

    ``f(x) = ReLU(x - T + T tanh((x - T) / lam)) - ReLU(-x - T + T tanh((-x - T) / lam))``.

    Odd in ``x``; 0 on ``[-T, T]`` for every ``lam`` (where ``x - T <= 0``, both terms of
    the first ReLU are negative); it rises from 0 at ``T`` to ``~x`` over a width of a few
    ``lam`` above ``T``; and tends to hard thresholding (``x`` where ``|x| > T``, else 0)
    as ``lam -> 0``. ``t`` and ``lam`` (> 0) broadcast against ``x``.
    """
    return (F.relu(x - t + t * torch.tanh((x - t) / lam))
            - F.relu(-x - t + t * torch.tanh((-x - t) / lam)))


def annealed(start: float, end: float, step: int, steps: int) -> float:
    """Geometric schedule from ``start`` (step 0) to ``end`` (step ``steps - 1``)."""
    if steps <= 1:
        return end
    return start * (end / start) ** (step / (steps - 1))


def fit_threshold(x: torch.Tensor, y: torch.Tensor, *, init: float = 1.0, steps: int = 400,
                  lr: float = 0.05, lam_start: float = 1.0, lam_end: float = 0.01) -> float:
    """The practical's toy: the threshold ``T`` of ``y = hard_threshold(x, T)``, learned by
    Adam on the MSE of ``smooth_hard_threshold(x, T, lam)`` against ``y`` while ``lam``
    goes geometrically from ``lam_start`` to ``lam_end`` (in the units of ``x``)."""
    t = nn.Parameter(torch.tensor(float(init), dtype=x.dtype))
    opt = torch.optim.Adam([t], lr=lr)
    for step in range(steps):
        lam = annealed(lam_start, lam_end, step, steps)
        opt.zero_grad()
        loss = F.mse_loss(smooth_hard_threshold(x, t, lam), y)
        loss.backward()
        opt.step()
    return float(t.detach())


@register_model("dct-learnable", kind="learned",
                description="sliding-window DCT with one learnable hard threshold per frequency "
                            "(architecture; dct-learned holds the trained thresholds)")
class LearnedDCTDenoiser(DCTDenoiser):
    """Sliding-window hard DCT thresholding with a threshold ``r[k] * sigma`` per frequency.

    Args:
        patch_size: side ``N`` of the square patches; ``r`` holds ``N * N`` values, index
            ``v * N + u`` for vertical frequency ``u`` and horizontal frequency ``v`` (the
            order of :func:`denoise.models.dct.dct_basis`), 0 the DC.
        init: the initial threshold of every non-DC frequency (``dct``'s 2.7, so that an
            untrained model is exactly ``dct``).
        temperature: in train mode with gradients enabled, the thresholds are
            :func:`smooth_hard_threshold` with ``lam = temperature * sigma``.
        color_transform, border, chunk_elements: as for :class:`DCTDenoiser`.
        channels: accepted (and ignored) so that ``denoise train --model dct-learnable``
            can build the model; any channel count works (color through dct's transform).

    ``r`` is the only parameter (state dict key ``"r"``). The base class is built with
    ``threshold=1``, so the per-plane thresholds it hands to :meth:`_shrink` are the
    planes' sigmas, which ``_shrink`` multiplies by ``r``.
    """

    def __init__(self, patch_size: int = 8, init: float = BASELINE_R, temperature: float = 0.01,
                 color_transform: bool = True, border: str = "reflect",
                 chunk_elements: int = 1 << 24, channels: int | None = None):
        super().__init__(patch_size=patch_size, threshold=1.0, mode="hard",
                         color_transform=color_transform, border=border,
                         chunk_elements=chunk_elements)
        if init < 0 or temperature <= 0:
            raise InputError("init must be >= 0 and temperature > 0")
        r = torch.full((patch_size * patch_size,), float(init))
        r[0] = 0.0  # the DC is kept whatever r[0] says
        self.r = nn.Parameter(r)
        self.temperature = temperature

    def extra_repr(self) -> str:
        return (f"patch_size={self.patch_size}, r=[{self.r.min():.3g}..{self.r.max():.3g}] x sigma "
                f"(DC kept), temperature={self.temperature:g}, "
                f"color_transform={self.color_transform}, border={self.border!r}")

    @property
    def smooth(self) -> bool:
        """Whether forward uses the differentiable threshold (train mode, grad enabled)."""
        return self.training and torch.is_grad_enabled()

    def threshold_map(self) -> torch.Tensor:
        """The learned multiples of sigma as an (N, N) map, row = vertical frequency u,
        column = horizontal frequency v (DC at [0, 0], shown as 0)."""
        n = self.patch_size
        r = self.r.detach().clone()
        r[0] = 0.0
        return r.view(n, n).T.contiguous()  # r[v * n + u] -> map[u, v]

    def _shrink(self, coef: torch.Tensor, thresholds: list[float]) -> torch.Tensor:
        """Threshold coefficients (P, K, h, w): frequency k of plane p at ``r[k] * sigma_p``
        (``thresholds`` holds the sigmas), the DC kept. Hard and in place at inference;
        :func:`smooth_hard_threshold` out of place in training."""
        sigma = torch.tensor(thresholds, dtype=coef.dtype, device=coef.device).view(-1, 1, 1, 1)
        r = self.r.to(coef).view(1, -1, 1, 1)
        if self.smooth:
            lam = (self.temperature * sigma).clamp_min(1e-12)
            shrunk = smooth_hard_threshold(coef[:, 1:], r[:, 1:] * sigma, lam)
            return torch.cat([coef[:, :1], shrunk], dim=1)
        t = r.detach() * sigma  # (P, K, 1, 1)
        if len(set(thresholds)) == 1:
            # One sigma: a fused hardshrink per frequency, about 3x faster than a mask.
            row = t[0].view(-1).tolist()
            for k in range(1, coef.shape[1]):  # k = 0, the DC, is kept
                coef[:, k] = F.hardshrink(coef[:, k], row[k])
            return coef
        t = t.expand(coef.shape[0], -1, 1, 1).clone()
        t[:, 0] = -1.0  # |c| > -1 always: the DC is kept
        return coef.masked_fill_(coef.abs() <= t, 0.0)


register_weights("dct-learned", "dct-learnable", patch_size=8, description=(
    "sliding-window DCT, hard thresholds per frequency learned on Train400 (gray); any sigma"))


def hard_threshold(x: torch.Tensor, t: float) -> torch.Tensor:
    """Hard thresholding: ``x`` where ``|x| > t``, else 0."""
    return torch.where(x.abs() > t, x, torch.zeros_like(x))


def toy_problem(n: int = 20000, std: float = 8.0, t: float = 2.4, seed: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The practical's toy data: ``x ~ N(0, std^2)`` (``n`` draws) and ``y = hard_threshold(x, t)``."""
    x = std * torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x, hard_threshold(x, t)


__all__ = ["BASELINE_R", "LearnedDCTDenoiser", "annealed", "fit_threshold", "hard_threshold",
           "smooth_hard_threshold", "toy_problem"]
