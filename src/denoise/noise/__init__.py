"""Noise models: objects that corrupt clean images ``(N, C, H, W)`` in [0, 1].

Each model is called as ``noise(x, generator)`` and returns the noisy batch. Randomness
comes only from the ``generator`` passed: a :class:`torch.Generator`, an int seed, or None
for torch's global generator (so ``torch.manual_seed`` governs it). Random numbers are
drawn on the generator's device and moved to the image's, so a CPU generator gives the
same noise for an image on any device.

Parameters are on the 0-1 intensity scale, except in spec strings (see
:func:`parse_noise`), where Gaussian sigmas are on the 0-255 scale as in the literature.
Every parameter may also be a range ``(lo, hi)``: a value is then drawn uniformly per
image (blind training, as in Noise2Noise).

``clip`` defaults to False everywhere, so Gaussian and Poisson noise stay unbiased
("noise not clipped", the benchmark protocol of DnCNN/FFDNet). The replacement and
masking noises (Bernoulli, Impulse, SaltPepper, Text) never leave [0, 1] for inputs in
[0, 1]; for them ``clip`` changes nothing.

=================  =================  ===========================================
spec               class              noisy image
=================  =================  ===========================================
gaussian:25        Gaussian(25/255)   x + sigma * N(0, 1)
gaussian:0-50      Gaussian(range)    sigma drawn per image in [0, 50/255]
poisson:30         Poisson(30)        Poisson(lam * x) / lam (lam photons at white)
poissongaussian:   PoissonGaussian    Poisson(lam * x) / lam + sigma * N(0, 1)
  30,10
bernoulli:0.5      Bernoulli(0.5)     x * mask, mask = 1 with probability p (kept)
impulse:0.5        Impulse(0.5)       a fraction p of pixels get a uniform random colour
saltpepper:0.1     SaltPepper(0.1)    a fraction p of pixels set to 0 or 1 (even odds)
text:0.25          Text(0.25)         random strings cover a fraction p of the pixels
text:0.25,10-30    Text(0.25, (10,    the same, font sizes 10 to 30 pixels whatever
                   30))               the image size (crops and full images alike)
gaussian:25+       Compose([...])     the parts applied in order (here AWGN, then
  saltpepper:0.05                     5 % salt and pepper); sample() returns the
                                      sigma of the first Gaussian part
camera             Camera()           camera-like noise by unprocessing sRGB to raw,
                                      Poisson-Gaussian noise on a Bayer mosaic,
                                      demosaicing and processing back (see
                                      :mod:`.camera`); camera:jpeg adds JPEG,
                                      camera:shot=LO-HI,read=V,q=LO-HI sets levels
=================  =================  ===========================================

Append ``:clip`` to a spec to clip the result to [0, 1], e.g. ``gaussian:25:clip``; in a
composed spec it applies to its part (``gaussian:25:clip+saltpepper:0.05``).
"""
from .camera import Camera
from .compose import Compose
from .models import (
                     Bernoulli,
                     Gaussian,
                     GeneratorLike,
                     Impulse,
                     Noise,
                     Param,
                     Poisson,
                     PoissonGaussian,
                     SaltPepper,
                     make_generator,
)
from .spec import NOISE_KINDS, parse_noise, sigma_of
from .text import Text

__all__ = ["Noise", "Gaussian", "Poisson", "PoissonGaussian", "Bernoulli", "Impulse",
           "SaltPepper", "Text", "Compose", "Camera", "NOISE_KINDS", "parse_noise", "sigma_of", "make_generator",
           "Param", "GeneratorLike"]
