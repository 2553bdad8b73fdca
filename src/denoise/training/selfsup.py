"""Learning from single noisy images (``target="self"``): no pairs, no clean images.

Two objectives, both for the ordinary registered networks (any :class:`~denoise.models.base.Restorer`
that ignores ``sigma``, e.g. the U-Nets):

* **Neighbor2Neighbor** (``self_mode="n2n"``; Huang et al., CVPR 2021), for
  pixel-independent noise. In every 2x2 cell of a noisy image ``y`` one pixel and one of its
  horizontal or vertical neighbours (one of the 8 ordered adjacent pairs, drawn per cell)
  go to two half-resolution sub-images ``g1(y)`` and ``g2(y)``; their noise is independent
  and their clean contents nearly equal, so ``g2(y)`` is a Noise2Noise target for
  ``f(g1(y))``. The loss is ``||f(g1(y)) - g2(y)||^2 + gamma * ||f(g1(y)) - g2(y) -
  (g1(f(y)) - g2(f(y)))||^2`` (means over pixels) with ``f(y)`` computed without gradient;
  the regulariser corrects for ``g1(x) != g2(x)``. ``gamma`` rises linearly from 0 to
  ``self_gamma`` (default 2, the paper's value) over the run, as the authors' released
  training script ramps it (``self_ramp=False``: ``self_gamma`` from the first step, for
  fine-tuning a trained network). Inference is the plain network on the whole image.
* **Blind spot on pixel-shuffle-downsampled images** (``self_mode="pd"``; the idea of
  AP-BSN, Lee et al., CVPR 2022), for spatially correlated noise. Implemented as a
  *masking scheme* (Noise2Self / Noise2Void style J-invariant loss), not a blind-spot
  architecture: the image is split by pixel-shuffle downsampling with stride
  ``pd_stride`` into ``stride**2`` sub-images (pixels ``stride`` apart, whose noise is
  nearly independent even when neighbouring pixels' noise is correlated); in each
  sub-image the pixels of a random phase of a :data:`MASK_GRID`-spaced grid are replaced
  by a random one of their 8 neighbours, and the loss is taken on those pixels only,
  against their own noisy values. The network never sees a pixel it is scored on, so it
  cannot learn the identity. Inference (asymmetric PD, as AP-BSN): the plain, unmasked
  network runs on the sub-images of the (smaller) stride ``pd_infer_stride`` (1: the
  whole image), and they are shuffled back (:class:`PDRestorer`). :class:`BlindSpotPD`
  is the exact blind-spot version (each pixel predicted from the pass in which it is
  masked; ``MASK_GRID**2`` passes); it gives the self-supervised validation loss.

Without clean images (``noise="none"``: the folder's images are themselves noisy, e.g.
real photos) validation reports ``-10 log10`` of the self-supervised loss on held-out
noisy images: a PSNR against a noisy reference (see :data:`VALIDATION_NOTE`).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..models.base import Wrapper, contract
from ..models.unet import pad_to_multiple
from .config import TrainConfig
from .data import Batch, center_crop, random_patches

#: Spacing of the masked-pixel grid of the pd objective (a 1/9 of the pixels per pass).
#: Any spacing >= 2 keeps the blind spot exact with 3x3 neighbour replacement.
MASK_GRID = 3

#: The 8 ordered pairs of horizontally or vertically adjacent positions in a 2x2 cell,
#: positions numbered 0 (top left), 1 (top right), 2 (bottom left), 3 (bottom right).
NEIGHBOUR_PAIRS = torch.tensor([[0, 1], [0, 2], [1, 0], [1, 3], [2, 0], [2, 3], [3, 1], [3, 2]])

#: The 8 neighbour offsets (dy, dx) of a pixel.
OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]

Forward = Callable[[torch.Tensor], torch.Tensor]

# --------------------------------------------------------------------------- Neighbor2Neighbor


def neighbour_indices(n: int, h: int, w: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (n, h, w) maps of cell positions (0-3): per 2x2 cell, a pixel and one of its
    horizontal or vertical neighbours, drawn uniformly among the 8 ordered pairs."""
    pair = NEIGHBOUR_PAIRS[torch.randint(len(NEIGHBOUR_PAIRS), (n, h, w), generator=generator)]
    return pair[..., 0], pair[..., 1]


def subsample(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The half-resolution sub-image of ``x`` (N, C, H, W) that takes, in every 2x2 cell,
    the pixel at position ``index`` (N, H//2, W//2) (the same for every channel)."""
    n, c = x.shape[:2]
    h, w = index.shape[-2:]
    cells = F.pixel_unshuffle(x[..., :2 * h, :2 * w], 2).view(n, c, 4, h, w)
    idx = index.to(x.device)[:, None, None].expand(n, c, 1, h, w)
    return cells.gather(2, idx).squeeze(2)


def neighbour_pair(y: torch.Tensor, generator: torch.Generator):
    """``(g1(y), g2(y), (i1, i2))``: the random neighbour sub-images of ``y`` and the cell
    positions they took (an odd last row or column is dropped)."""
    i1, i2 = neighbour_indices(y.shape[0], y.shape[-2] // 2, y.shape[-1] // 2, generator)
    return subsample(y, i1), subsample(y, i2), (i1, i2)


def n2n_loss(net: Forward, y: torch.Tensor, generator: torch.Generator, *, gamma: float,
             reference: Forward | None = None, loss_fn=None, progress: float = 0.0) -> torch.Tensor:
    """The Neighbor2Neighbor loss of the network ``net`` on the noisy batch ``y``.

    ``reference`` computes ``f(y)`` for the regulariser, without gradient (default:
    ``net``; the Trainer passes the bare model, ``net`` may be a DDP wrapper).
    ``loss_fn(pred, target, progress=...)`` is the reconstruction term (default: mean
    squared error); the regulariser is always a mean squared error. ``gamma=0`` skips
    the full-size pass.
    """
    y = y[..., :y.shape[-2] // 2 * 2, :y.shape[-1] // 2 * 2]
    g1, g2, (i1, i2) = neighbour_pair(y, generator)
    out = net(g1).float()
    g2 = g2.float()
    recon = torch.mean((out - g2) ** 2) if loss_fn is None else loss_fn(out, g2, progress=progress)
    if gamma == 0:
        return recon
    with torch.no_grad():
        fy = (reference or net)(y).float()
    expected = subsample(fy, i1) - subsample(fy, i2)
    return recon + gamma * torch.mean((out - g2 - expected) ** 2)


# --------------------------------------------------------------------------- pixel-shuffle downsampling


def pd_down(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Pixel-shuffle downsampling: (N, C, H, W) -> (N * stride**2, C, H/stride, W/stride),
    sub-image ``(i, j)`` of image ``n`` (at ``n * stride**2 + i * stride + j``) holding
    the pixels ``x[n, :, i::stride, j::stride]``. H and W must be multiples of ``stride``."""
    n, c, h, w = x.shape
    if h % stride or w % stride:
        raise InputError(f"pd_down: a {h}x{w} image is not a multiple of the stride {stride}")
    s = stride
    return x.reshape(n, c, h // s, s, w // s, s).permute(0, 3, 5, 1, 2, 4).reshape(n * s * s, c, h // s, w // s)


def pd_up(z: torch.Tensor, stride: int) -> torch.Tensor:
    """The inverse of :func:`pd_down` (exact: a permutation of the pixels)."""
    m, c, h, w = z.shape
    s = stride
    return z.reshape(m // (s * s), s, s, c, h, w).permute(0, 3, 4, 1, 5, 2).reshape(m // (s * s), c, h * s, w * s)


def grid_mask(n: int, h: int, w: int, grid: int, phase: torch.Tensor, device=None) -> torch.Tensor:
    """(n, 1, h, w) bool: the pixels ``(i, j)`` with ``i % grid, j % grid == phase[k]``
    for image ``k`` (``phase`` (n, 2) or (2,))."""
    phase = phase.to(device).expand(n, 2)
    i = torch.arange(h, device=device).view(1, h, 1) % grid == phase[:, :1, None]
    j = torch.arange(w, device=device).view(1, 1, w) % grid == phase[:, 1:, None]
    return (i & j)[:, None]


def neighbour_replace(z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``z`` with every pixel replaced by one of its 8 neighbours, drawn per pixel (the
    same for every channel; reflected at the border, so never the pixel itself)."""
    n, c, h, w = z.shape
    if h < 2 or w < 2:
        raise InputError(f"blind-spot masking needs sub-images of at least 2x2 pixels, got {h}x{w}; "
                         "use larger crops or a smaller --pd-stride")
    zp = F.pad(z, (1, 1, 1, 1), mode="reflect")
    shifted = torch.stack([zp[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in OFFSETS])
    pick = torch.randint(len(OFFSETS), (1, n, 1, h, w), generator=generator).to(z.device)
    return shifted.gather(0, pick.expand(1, n, c, h, w))[0]


def pd_loss(net: Forward, y: torch.Tensor, generator: torch.Generator, *, stride: int,
            grid: int = MASK_GRID, loss_fn=None, progress: float = 0.0) -> torch.Tensor:
    """The masked (J-invariant) loss on the pixel-shuffle-downsampled noisy batch ``y``:
    the network's output at the masked pixels of each sub-image against their noisy
    values (the last rows/columns beyond a multiple of ``stride`` are dropped)."""
    y = y[..., :y.shape[-2] // stride * stride, :y.shape[-1] // stride * stride]
    z = pd_down(y, stride)
    m, _, h, w = z.shape
    mask = grid_mask(m, h, w, grid, torch.randint(grid, (m, 2), generator=generator), z.device)
    out = net(torch.where(mask, neighbour_replace(z, generator), z)).float()
    sel = mask.expand_as(out)
    pred, target = out[sel], z.float()[sel]
    return torch.mean((pred - target) ** 2) if loss_fn is None else loss_fn(pred, target, progress=progress)


class PDRestorer(Wrapper):
    """Inference of a pd-trained network: the plain network on the ``stride``-PD
    sub-images (input reflect-padded to a multiple of the stride), shuffled back."""

    def __init__(self, model: nn.Module, stride: int):
        super().__init__(model)
        self.stride = int(stride)
        self.receptive_field = self.stride * (self.receptive_field + 1)
        self.alignment = self.stride * self.alignment

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:  # noqa: ARG002 - blind
        s = self.stride
        xp, (h, w) = pad_to_multiple(x, s)
        return pd_up(self.model(pd_down(xp, s)), s)[..., :h, :w]


class BlindSpotPD(Wrapper):
    """The exact blind-spot denoiser of a pd-trained network: on the ``stride``-PD
    sub-images, ``grid**2`` passes, each masking one phase of the grid (pixels replaced by
    a random neighbour, drawn from ``seed``); every pixel takes its output from the pass
    in which it was masked, so no output pixel depends on its own input pixel. The input
    is zero-padded to a multiple of the stride (a reflected copy of a pixel would leak it
    past its blind spot)."""

    def __init__(self, model: nn.Module, stride: int, grid: int = MASK_GRID, seed: int = 0):
        super().__init__(model)
        if grid < 2:
            raise InputError(f"the mask grid must be at least 2 pixels, got {grid}")
        self.stride, self.grid, self.seed = int(stride), int(grid), int(seed)
        self.receptive_field = self.stride * (self.receptive_field + 2)
        self.alignment = self.stride * self.alignment

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:  # noqa: ARG002 - blind
        s, h, w = self.stride, x.shape[-2], x.shape[-1]
        z = pd_down(F.pad(x, (0, (-w) % s, 0, (-h) % s)), s)
        g = torch.Generator().manual_seed(self.seed)
        out = torch.zeros_like(z)
        for a in range(self.grid):
            for b in range(self.grid):
                mask = grid_mask(z.shape[0], z.shape[-2], z.shape[-1], self.grid, torch.tensor([a, b]), z.device)
                out = torch.where(mask, self.model(torch.where(mask, neighbour_replace(z, g), z)), out)
        return pd_up(out, s)[..., :h, :w]


# --------------------------------------------------------------------------- Trainer objectives

VALIDATION_NOTE = (
    "Validation PSNR (log.csv, val_psnr; 'val_psnr_vs_noisy' on the progress bar) is self-supervised: "
    "the training images are noisy and no clean version exists. It is -10*log10 of the self-supervised "
    "loss (mean squared error) on the held-out noisy images, drawn the same way at every validation: "
    "n2n, the output on one neighbour sub-image against the other sub-image; pd, the blind-spot "
    "prediction of every pixel against its own noisy value. The reference carries its own noise, so "
    "the figure sits well below what the model reaches against a clean image (by about the noise "
    "variance); watch its trend (it rises as the model improves), not its level.")


class SelfObjective:
    """The loss, the inference model and the self-supervised validation of one mode.

    ``objective(net, model, y, generator, progress)`` is the training loss on the noisy
    batch ``y`` (``net`` the trained module, maybe DDP-wrapped; ``model`` the bare one).
    """

    def __init__(self, config: TrainConfig, loss_fn=None):
        self.mode, self.gamma, self.ramp = config.self_mode, float(config.self_gamma), bool(config.self_ramp)
        self.stride, self.infer_stride = int(config.pd_stride), int(config.pd_infer_stride)
        self.loss_fn, self.val_seed = loss_fn, config.seed + 12345

    def __call__(self, net: Forward, model: nn.Module, y: torch.Tensor, generator: torch.Generator,
                 progress: float) -> torch.Tensor:
        if self.mode == "n2n":
            ramp = min(max(progress, 0.0), 1.0) if self.ramp else 1.0
            return n2n_loss(net, y, generator, gamma=self.gamma * ramp,
                            reference=model, loss_fn=self.loss_fn, progress=progress)
        return pd_loss(net, y, generator, stride=self.stride, loss_fn=self.loss_fn, progress=progress)

    def restorer(self, model: nn.Module) -> nn.Module:
        """The model as it denoises a whole image (the model itself for n2n)."""
        return model if self.mode == "n2n" or self.infer_stride == 1 else PDRestorer(model, self.infer_stride)

    @torch.no_grad()
    def validate(self, model: nn.Module, images: Sequence[torch.Tensor], device) -> float | None:
        """``-10 log10`` of the mean self-supervised loss (mean squared error) over the
        held-out noisy ``images`` (C, H, W), drawn from a fixed seed; None without any."""
        if not images:
            return None
        was_training = model.training
        model.eval()
        g = torch.Generator().manual_seed(self.val_seed)
        losses = []
        for y in images:
            y = y[None].to(device)
            if self.mode == "n2n":
                losses.append(float(n2n_loss(model, y, g, gamma=0.0)))
            else:
                out = BlindSpotPD(model, self.stride, seed=self.val_seed)(y).float()
                losses.append(float(torch.mean((out - y) ** 2)))
        model.train(was_training)
        return -10 * math.log10(max(sum(losses) / len(losses), 1e-12))


def objective_for(config: TrainConfig, model: nn.Module, loss_fn=None) -> SelfObjective | None:
    """The self-supervised objective of ``config`` (None unless ``target="self"``)."""
    if config.target != "self":
        return None
    if contract(model).uses_sigma:
        raise InputError(f"--target self trains blind networks; {config.model} needs the noise level "
                         "of its input: pick a blind model (n2n-unet, unet-small, ...)")
    return SelfObjective(config, loss_fn)


class NoisyFolderData:
    """Single noisy images with no clean version (``noise="none"``): random patches with
    flips and rotations; ``target`` is the input itself (the objective makes the target).
    The held-out ``val_images`` give the self-supervised validation loss."""

    clean_reference = False
    validation_note = VALIDATION_NOTE

    def __init__(self, images: Sequence[torch.Tensor], *, crop: int | None = 64,
                 val_images: Sequence[torch.Tensor] = (), val_crop: int | None = None):
        if not images:
            raise InputError("no training images")
        self.images, self.crop = list(images), crop
        self.channels = int(self.images[0].shape[0])
        self.val_images = [center_crop(v, val_crop) for v in val_images]

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        (noisy,) = random_patches(self.images, batch_size, self.crop, generator)
        return Batch(noisy, noisy)

    def validation(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """No (noisy, clean) pairs: there is no clean image."""
        return []
