"""A compact CIFAR classifier whose convolution trunk is the gated DSC denoiser's encoder.

:class:`DSCClassifier` has the five convolutions of :class:`~denoise.models.rednet.GatedDSC`
with their exact shapes (3x3; the first at full resolution, four with stride 2; 64, 64, 128,
256, 512 features), each followed by batch normalisation and a ReLU, optionally ``extra``
stride-1 3x3 convolutions of the same width after each of them (default initialisation
always: the denoiser has no counterpart), then global average pooling, dropout and one
linear layer. Initialising it from a trained denoiser (:func:`init_from_denoiser`) is a
plain copy of the five encoder convolutions' weights and biases.

The gates need no counterpart: the denoiser feeds ``delta_i * X_i`` to conv ``i + 1``, and a
convolution followed by batch normalisation gives the same output for ``delta * x`` as for
``x`` (up to BatchNorm's epsilon), so the copied filters see what they saw in the denoiser.

Input: RGB (or gray, ``channels=1``) float images in [0, 1], the library's convention,
with no further normalisation (the first BatchNorm takes care of the offset and scale), so
that the copied first layer sees inputs on the scale it was trained on. Any size works
(the features are convolutional); CIFAR images are 32x32.

It is not a restoration model (no :class:`~denoise.models.base.Restorer` contract), so it
is not in the model registry: create it directly.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, ModelError
from .rednet import DSC_WIDTHS, GatedDSC

#: The number of stages (one per encoder convolution) whose features :meth:`features` returns.
STAGES = len(DSC_WIDTHS)


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def check_layers(layers) -> list[int]:
    """The feature layers as a list: stages 1..5 (InputError otherwise, or when empty)."""
    wanted = list(layers)
    if not wanted or any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= STAGES for k in wanted):
        raise InputError(f"feature layers must be stages 1..{STAGES}, got {wanted!r}")
    return wanted


class DSCClassifier(nn.Module):
    """Conv-BN-ReLU trunk shaped like the DSC encoder, global pooling, a linear head.

    ``extra`` stride-1 convolutions follow each encoder convolution (0: the bare encoder,
    five convolutions; a sequence of five counts: per stage); ``dropout`` is applied to the
    pooled features.
    """

    def __init__(self, channels: int = 3, num_classes: int = 10, extra: int | Sequence[int] = 0,
                 dropout: float = 0.0):
        super().__init__()
        if channels not in (1, 3) or isinstance(channels, bool):
            raise InputError(f"channels must be 1 (gray) or 3 (color), got {channels!r}")
        self.channels = channels
        self.num_classes = _check_int("num_classes", num_classes, 2)
        if isinstance(extra, int) and not isinstance(extra, bool):
            counts = [extra] * STAGES
        elif isinstance(extra, (list, tuple)) and len(extra) == STAGES:
            counts = list(extra)
        else:
            raise InputError(f"extra must be an integer >= 0 or {STAGES} of them (one per stage), got {extra!r}")
        self.extra = tuple(_check_int("extra", k, 0) for k in counts)
        if not 0.0 <= float(dropout) < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {dropout!r}")
        widths = (channels,) + DSC_WIDTHS
        # convs[i] has the shape of GatedDSC.convs[i] (weight copied by init_from_denoiser)
        self.convs = nn.ModuleList(
            [nn.Conv2d(widths[i], widths[i + 1], 3, stride=1 if i == 0 else 2, padding=1)
             for i in range(STAGES)])
        self.norms = nn.ModuleList([nn.BatchNorm2d(w) for w in DSC_WIDTHS])
        self.extras = nn.ModuleList(
            [nn.ModuleList([nn.Conv2d(w, w, 3, padding=1, bias=False) for _ in range(k)])
             for w, k in zip(DSC_WIDTHS, self.extra)])
        self.extra_norms = nn.ModuleList(
            [nn.ModuleList([nn.BatchNorm2d(w) for _ in range(k)]) for w, k in zip(DSC_WIDTHS, self.extra)])
        self.dropout = nn.Dropout(float(dropout))
        self.head = nn.Linear(DSC_WIDTHS[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Stage ``i`` (0-based): encoder conv ``i``, BN, ReLU, then its extra conv-BN-ReLUs."""
        x = F.relu(self.norms[i](self.convs[i](x)))
        for conv, norm in zip(self.extras[i], self.extra_norms[i]):
            x = F.relu(norm(conv(x)))
        return x

    def features(self, x: torch.Tensor, layers) -> list[torch.Tensor]:
        """The outputs of the stages ``layers`` (1-based, 1..5, after their ReLU), in the
        order given; the trunk runs only as deep as the deepest one asked for."""
        wanted = check_layers(layers)
        out: dict[int, torch.Tensor] = {}
        for i in range(max(wanted)):
            x = self.stage(i, x)
            out[i + 1] = x
        return [out[k] for k in wanted]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of images (N, channels, H, W) in [0, 1]."""
        for i in range(STAGES):
            x = self.stage(i, x)
        return self.head(self.dropout(x.mean(dim=(2, 3))))


def encoder_pairs(classifier: DSCClassifier, dsc: nn.Module) -> list[tuple[nn.Conv2d, nn.Conv2d]]:
    """The (classifier conv, denoiser conv) pairs that :func:`init_from_denoiser` copies;
    ModelError naming the first mismatch when the two do not fit."""
    if not isinstance(classifier, DSCClassifier):
        raise ModelError(f"expected a DSCClassifier to initialise, got {type(classifier).__name__}")
    if not isinstance(dsc, GatedDSC):
        raise ModelError(f"a DSCClassifier is initialised from a GatedDSC denoiser (model 'dsc'), "
                         f"got {type(dsc).__name__}")
    pairs = list(zip(classifier.convs, dsc.convs))
    if len(dsc.convs) != len(classifier.convs):
        raise ModelError(f"the denoiser has {len(dsc.convs)} encoder convolutions, the classifier "
                         f"{len(classifier.convs)}")
    for i, (mine, theirs) in enumerate(pairs, start=1):
        for what in ("weight", "bias"):
            a, b = getattr(mine, what), getattr(theirs, what)
            if a is None or b is None or a.shape != b.shape or mine.stride != theirs.stride:
                shape_a = None if a is None else tuple(a.shape)
                shape_b = None if b is None else tuple(b.shape)
                hint = (" (a gray denoiser for a color classifier, or the reverse: build both with "
                        "the same channels)" if i == 1 and shape_a and shape_b and shape_a[1] != shape_b[1]
                        else "")
                raise ModelError(f"cannot initialise the classifier from this denoiser: encoder conv {i} "
                                 f"{what} is {shape_a} (stride {mine.stride}) in the classifier but "
                                 f"{shape_b} (stride {theirs.stride}) in the denoiser{hint}")
    return pairs


@torch.no_grad()
def init_from_denoiser(classifier: DSCClassifier, dsc: nn.Module) -> list[str]:
    """Copy the denoiser's five encoder convolutions (weights and biases) into the
    classifier's; everything else (BatchNorm, extra convolutions, head) is left as it is.
    Returns the names of the classifier parameters that were overwritten. Nothing is
    copied when any shape differs (ModelError)."""
    pairs = encoder_pairs(classifier, dsc)
    names = []
    for i, (mine, theirs) in enumerate(pairs):
        mine.weight.copy_(theirs.weight.detach().to(mine.weight))
        mine.bias.copy_(theirs.bias.detach().to(mine.bias))
        names += [f"convs.{i}.weight", f"convs.{i}.bias"]
    return names


def classifier_kwargs(model: DSCClassifier) -> dict:
    """The keyword arguments that rebuild ``model``'s architecture."""
    return {"channels": model.channels, "num_classes": model.num_classes, "extra": list(model.extra),
            "dropout": float(model.dropout.p)}


def save_classifier(path: str | Path, model: DSCClassifier, classes: Sequence[str] = ()) -> Path:
    """Write the weights as safetensors (atomically), the architecture and the class
    names in its metadata; :func:`load_classifier` reads it back."""
    from .registry import save_weights

    meta = {"architecture": "DSCClassifier", "kwargs": json.dumps(classifier_kwargs(model)),
            "classes": json.dumps(list(classes))}
    return save_weights(path, model.state_dict(), metadata=meta)


def load_classifier(path: str | Path) -> tuple[DSCClassifier, list[str]]:
    """``(classifier in eval mode, class names)`` from a file of :func:`save_classifier`."""
    from safetensors import SafetensorError, safe_open

    from .registry import load_weights

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"classifier weights not found: {path}")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"cannot read classifier weights {path}: {exc}") from None
    if meta.get("architecture") != "DSCClassifier":
        raise ModelError(f"{path} holds no DSCClassifier (metadata {meta.get('architecture')!r})")
    model = DSCClassifier(**json.loads(meta["kwargs"]))
    load_weights(model, path)
    return model.eval(), json.loads(meta.get("classes", "[]"))
