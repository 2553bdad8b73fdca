"""The EE-559 mini-project 2 network (built with :mod:`denoise.scratch`, no autograd) as a
restoration model, so that its shipped weights run by name like every other model.

The course's ``Model`` (:mod:`denoise.ee559.project2`) trains it; here it only runs
forward. Its state dict is the scratch network's (keys ``0.*``, ``2.*``, ``4.1.*``,
``6.1.*``), so the registry loads ``ee559-project2.safetensors`` into it.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from .. import scratch
from ..errors import ModelError
from .base import Restorer
from .registry import register_model, register_weights
from .unet import pad_to_multiple


class ScratchCourseNet(Restorer):
    """``denoise.scratch.ee559_net``: two stride-2 convolutions, two upsampling
    convolutions, sigmoid output; blind; RGB; any size (reflect-padded to a multiple of 4)."""

    alignment = 4
    exportable = False  # a denoise.scratch network, not torch modules
    # 3x3 convolutions at 1, 1/2, 1/4, 1/2 and 1 of the resolution reach 1 + 2 + 4 + 2 + 1
    # pixels; the 4x4 blocks add up to 3 more.
    receptive_field = 13

    def __init__(self, channels: int = 3, features: int = 48):
        super().__init__()
        if channels != 3:
            raise ValueError("the EE-559 network takes RGB images (channels=3)")
        self.channels = channels
        self.net = scratch.ee559_net(features)

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:  # noqa: ARG002 - blind
        padded, (h, w) = pad_to_multiple(x, self.alignment)
        with torch.no_grad():
            return self.net(padded.contiguous())[..., :h, :w]

    def _apply(self, fn, recurse=True):  # .to(device) moves the scratch parameters too
        self.net.to(device=fn(torch.empty(0)).device)
        return super()._apply(fn, recurse)

    def state_dict(self, *args, **kwargs):  # noqa: ARG002 - the scratch network's keys
        return self.net.state_dict()

    def load_state_dict(self, state: Mapping[str, torch.Tensor], strict: bool = True):
        try:
            self.net.load_state_dict(state, strict=strict)
        except scratch.ScratchError as exc:
            raise ModelError(f"the weights do not fit ee559_net: {exc}") from None


register_model("ee559-net", description="EE-559 mini-project 2 network (denoise.scratch, no autograd)",
               channels=3)(ScratchCourseNet)
register_weights("ee559-project2", "ee559-net", description=(
    "EE-559 mini-project 2 (denoise.scratch network, Noise2Noise on the course's 32x32 color crops)"))
