"""Classical (training-free) denoisers: BM3D, non-local means, wavelet shrinkage and TV.

They share the signature of every denoiser in the package, ``forward(x, sigma=None)`` on
float32 tensors (N, C, H, W) in [0, 1] with ``sigma`` on the 0-1 scale, and estimate the
noise level of each image when ``sigma`` is None. The scikit-image and ``bm3d`` ones run
on NumPy arrays, one image of the batch at a time, on the CPU.

:class:`ClassicalDenoiser` is also the base of the tensor-native ``dct`` denoiser
(:mod:`denoise.models.dct`).
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError, MissingDependencyError
from .base import Restorer
from .registry import register_model


def sigma_per_image(x: torch.Tensor, sigma: float | torch.Tensor | None) -> torch.Tensor:
    """The noise level of every image of the batch ``x`` as a tensor of shape (N,).

    ``sigma`` is a float, a tensor with one value or one per image, or None to estimate
    it from ``x`` with :func:`denoise.estimate.estimate_sigma`. The result has the dtype
    and device of ``x``.
    """
    n = x.shape[0]
    if sigma is None:
        from ..estimate import estimate_sigma

        s = estimate_sigma(x)
    elif isinstance(sigma, torch.Tensor):
        s = sigma.detach().reshape(-1)
        if s.numel() == 1:
            s = s.expand(n)
        elif s.numel() != n:
            raise InputError(f"sigma must be a float or hold one value per image ({n}), "
                             f"got {s.numel()} values")
    else:
        s = torch.full((n,), float(sigma))
    return s.to(device=x.device, dtype=x.dtype)


class ClassicalDenoiser(Restorer):
    """Base of the denoisers without learned weights.

    Attributes:
        receptive_field: radius in pixels of the input region that affects one output
            pixel; :func:`denoise.tiling.tiled` uses it as the overlap between tiles.
            Exact for local methods, a practical bound for the ones marked approximate.
        uses_sigma: the model needs the noise level (and estimates it when not given).
    """

    receptive_field: int = 0
    uses_sigma: bool = True
    exportable = False


class ArrayDenoiser(ClassicalDenoiser):
    """A classical denoiser implemented on NumPy arrays, applied image by image.

    Subclasses implement :meth:`denoise_array` on one float64 image, (H, W) for gray or
    (H, W, 3) for color, with sigma on the same 0-1 scale as the values.
    """

    def denoise_array(self, image: np.ndarray, sigma: float) -> np.ndarray:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        sigmas = sigma_per_image(x, sigma).tolist()
        out = torch.empty_like(x)
        for i, s in enumerate(sigmas):
            image = x[i].detach().cpu().double().permute(1, 2, 0).numpy()
            if image.shape[2] == 1:
                image = image[:, :, 0]
            result = np.asarray(self.denoise_array(np.ascontiguousarray(image), s))
            result = torch.from_numpy(result.reshape(image.shape[0], image.shape[1], -1).copy())
            out[i] = result.permute(2, 0, 1).to(out)
        return out


def _channel_axis(image: np.ndarray) -> int | None:
    return -1 if image.ndim == 3 else None


def _import_bm3d():
    try:
        import bm3d
    except ImportError:
        raise MissingDependencyError(
            "the bm3d denoiser needs the optional package 'bm3d': pip install 'denoise[bm3d]'") from None
    return bm3d


@register_model("bm3d", kind="classical", requires="bm3d",
                description="BM3D (Dabov et al. 2007) through the bm3d package; color in the opponent space")
class BM3D(ArrayDenoiser):
    """Block-matching and 3-D filtering, both stages, from the ``bm3d`` package.

    Gray images go through ``bm3d.bm3d``, color ones through ``bm3d.bm3d_rgb`` (block
    matching on luminance, ``colorspace`` "opp" or "YCbCr"). The package takes values
    and sigma in the same units, here the 0-1 scale.

    ``receptive_field`` is approximate: a 39-pixel search window around 8-pixel blocks,
    in two stages, and reference blocks on a fixed 3-pixel grid.
    """

    receptive_field = 2 * (39 // 2 + 8 - 1)

    def __init__(self, profile: str = "np", colorspace: str = "opp"):
        super().__init__()
        self._bm3d = _import_bm3d()
        self.profile = profile
        self.colorspace = colorspace

    def denoise_array(self, image: np.ndarray, sigma: float) -> np.ndarray:
        if image.ndim == 3:
            return self._bm3d.bm3d_rgb(image, sigma, profile=self.profile, colorspace=self.colorspace)
        return self._bm3d.bm3d(image, sigma, profile=self.profile)


@register_model("nlm", kind="classical",
                description="non-local means (Buades et al. 2005, fast mode) from scikit-image")
class NonLocalMeans(ArrayDenoiser):
    """Non-local means, ``skimage.restoration.denoise_nl_means`` in its fast mode.

    The filtering parameter is ``h = h_factor * sigma`` with sigma passed too, so the
    expected noise is subtracted from the patch distances. Patches of 5 pixels searched
    within 6 pixels follow scikit-image's example; ``h_factor`` 0.6 measured best of
    {0.6, 0.8, 1.0} on every 20th Train400 image at sigma 15, 25 and 50 (0.2 dB over
    0.8 at sigma 25 and 50, equal at 15). ``receptive_field`` is exact:
    ``patch_distance + patch_size // 2``.
    """

    def __init__(self, patch_size: int = 5, patch_distance: int = 6, h_factor: float = 0.6,
                 fast_mode: bool = True):
        super().__init__()
        self.patch_size = patch_size
        self.patch_distance = patch_distance
        self.h_factor = h_factor
        self.fast_mode = fast_mode
        self.receptive_field = patch_distance + patch_size // 2

    def denoise_array(self, image: np.ndarray, sigma: float) -> np.ndarray:
        from skimage.restoration import denoise_nl_means

        return denoise_nl_means(image, patch_size=self.patch_size, patch_distance=self.patch_distance,
                                h=self.h_factor * sigma, sigma=sigma, fast_mode=self.fast_mode,
                                channel_axis=_channel_axis(image), preserve_range=True)


@register_model("wavelet", kind="classical",
                description="wavelet shrinkage (BayesShrink, soft) from scikit-image; color in YCbCr")
class WaveletShrinkage(ArrayDenoiser):
    """Wavelet shrinkage, ``skimage.restoration.denoise_wavelet`` with the given sigma.

    ``method`` is "BayesShrink" (a threshold per sub-band) or "VisuShrink" (the universal
    threshold). Color images are shrunk in YCbCr, with sigma converted to that space.
    ``receptive_field`` is approximate: thresholds are chosen per sub-band over the whole
    image and the coarsest wavelet level spans tens of pixels.
    """

    receptive_field = 64

    def __init__(self, method: str = "BayesShrink", mode: str = "soft", wavelet: str = "db1"):
        super().__init__()
        if method not in ("BayesShrink", "VisuShrink"):
            raise InputError(f"method must be 'BayesShrink' or 'VisuShrink', got {method!r}")
        self.method = method
        self.mode = mode
        self.wavelet = wavelet

    def denoise_array(self, image: np.ndarray, sigma: float) -> np.ndarray:
        from skimage.restoration import denoise_wavelet

        color = image.ndim == 3
        return denoise_wavelet(image, sigma=sigma, wavelet=self.wavelet, mode=self.mode,
                               method=self.method, rescale_sigma=True,
                               channel_axis=_channel_axis(image), convert2ycbcr=color)


@register_model("tv", kind="classical",
                description="total-variation denoising (Chambolle 2004) from scikit-image")
class TotalVariation(ArrayDenoiser):
    """Total-variation denoising, ``skimage.restoration.denoise_tv_chambolle``.

    The weight grows linearly with the noise level: ``weight = weight_factor * sigma``
    (sigma on the 0-1 scale), since the data term's residual grows with sigma. The
    factor 0.75 was chosen among {0.5, 0.75, 1, 1.25, 1.5, 2, 3} on every 20th Train400
    image at sigma 15, 25 and 50, never on a test set: it was the best at all three.
    ``receptive_field`` is approximate: the minimisation couples the whole image, but
    the influence of a pixel decays within a few tens of pixels.
    """

    receptive_field = 32

    def __init__(self, weight_factor: float = 0.75, max_num_iter: int = 200):
        super().__init__()
        self.weight_factor = weight_factor
        self.max_num_iter = max_num_iter

    def denoise_array(self, image: np.ndarray, sigma: float) -> np.ndarray:
        from skimage.restoration import denoise_tv_chambolle

        return denoise_tv_chambolle(image, weight=self.weight_factor * sigma,
                                    max_num_iter=self.max_num_iter, channel_axis=_channel_axis(image))
