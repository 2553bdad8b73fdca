"""A perceptual (feature) loss: L2 between a frozen classifier's features of output and target.

``FeatureLoss(classifier, layers)(pred, target)`` is

    pixel_weight * mean((pred - target)^2)
        + feature_weight * sum over layers l of mean((phi_l(pred) - phi_l(target))^2)

with ``phi_l`` the output of stage ``l`` (after its ReLU) of a
:class:`~denoise.models.classifier.DSCClassifier` in eval mode (BatchNorm uses its running
statistics, so an image's features do not depend on the rest of the batch) and with its
parameters frozen: the gradient flows to ``pred`` only. The classifier takes RGB in
[0, 1], as the denoiser's images are, so no normalisation is applied; gray images are
repeated over the three channels. It has the signature of :mod:`denoise.training.losses`
(``loss(pred, target, *, mask=None, progress=0.0)``; ``mask`` and ``progress`` are unused).

:func:`calibrate` measures the scale that makes the feature term equal to the pixel term
on a batch (noisy input against its clean target), so that mixing weights are comparable.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import InputError
from ..models.classifier import DSCClassifier, check_layers

#: The default feature layers: stages 2 and 3 (64 channels at half, 128 at quarter resolution).
DEFAULT_LAYERS = (2, 3)


class FeatureLoss(nn.Module):
    """Pixel L2 plus L2 between frozen classifier features (see the module docstring).

    ``batch_statistics=True`` normalises with the statistics of each batch (BatchNorm in
    train mode, on a private copy of the classifier whose running statistics stay fixed):
    the setting of a loss network left in train mode, kept only to reproduce what it does
    (features blind to scaling the whole batch: dark outputs cost nothing).
    """

    def __init__(self, classifier: DSCClassifier, layers: Sequence[int] = DEFAULT_LAYERS, *,
                 feature_weight: float = 1.0, pixel_weight: float = 0.0, batch_statistics: bool = False):
        super().__init__()
        if not isinstance(classifier, DSCClassifier):
            raise InputError(f"FeatureLoss needs a DSCClassifier, got {type(classifier).__name__}")
        for name, w in (("feature_weight", feature_weight), ("pixel_weight", pixel_weight)):
            if not isinstance(w, (int, float)) or isinstance(w, bool) or not w >= 0:
                raise InputError(f"{name} must be a number >= 0, got {w!r}")
        if feature_weight == 0 and pixel_weight == 0:
            raise InputError("FeatureLoss needs a positive feature_weight or pixel_weight")
        if batch_statistics:  # a private copy whose running statistics never move
            classifier = copy.deepcopy(classifier)
            for m in classifier.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.momentum = 0.0
        self.batch_statistics = bool(batch_statistics)
        self.classifier = classifier.train(self.batch_statistics).requires_grad_(False)
        self.layers = tuple(check_layers(layers))
        self.feature_weight, self.pixel_weight = float(feature_weight), float(pixel_weight)

    def train(self, mode: bool = True) -> FeatureLoss:
        """The classifier stays in eval mode (or on batch statistics, see the class) whatever
        the mode asked for."""
        super().train(mode)
        self.classifier.train(self.batch_statistics)
        return self

    def _rgb(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise InputError(f"FeatureLoss takes (N, 1 or 3, H, W) images, got {tuple(x.shape)}")
        want = self.classifier.channels
        if x.shape[1] == want:
            return x
        if want == 3:
            return x.expand(-1, 3, -1, -1)
        raise InputError("a gray classifier cannot score color images")

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The classifier's features of ``x`` at :attr:`layers` (gradients flow to ``x``)."""
        self.classifier.train(self.batch_statistics)
        return self.classifier.features(self._rgb(x), self.layers)

    def feature_term(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The unweighted feature L2 (summed over the layers)."""
        with torch.no_grad():
            wanted = self.features(target.detach())
        got = self.features(pred)
        return sum(torch.mean((a - b) ** 2) for a, b in zip(got, wanted))

    def forward(self, pred: torch.Tensor, target: torch.Tensor, *, mask=None, progress: float = 0.0,
                noisy: torch.Tensor | None = None) -> torch.Tensor:
        """The loss contract of :mod:`denoise.training.losses` (``mask``, ``progress`` and
        ``noisy`` are accepted and not used)."""
        if pred.shape != target.shape:
            raise InputError(f"pred and target differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")
        loss = pred.new_zeros(())
        if self.feature_weight:
            loss = loss + self.feature_weight * self.feature_term(pred, target)
        if self.pixel_weight:
            loss = loss + self.pixel_weight * torch.mean((pred - target) ** 2)
        return loss

    def extra_repr(self) -> str:
        return (f"layers={self.layers}, feature_weight={self.feature_weight:g}, pixel_weight={self.pixel_weight:g}"
                + (", batch_statistics=True" if self.batch_statistics else ""))


@torch.no_grad()
def calibrate(loss: FeatureLoss, pred: torch.Tensor, target: torch.Tensor) -> float:
    """``pixel L2 / feature L2`` on a batch: the feature weight that makes both terms equal there."""
    feature = float(loss.feature_term(pred, target))
    if not feature > 0:
        raise InputError("cannot calibrate on a batch whose features match exactly")
    return float(torch.mean((pred - target) ** 2)) / feature
