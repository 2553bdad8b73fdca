"""Diagnostic: gain of real-photo models over camera-noise levels on the held-out CBSD432 split."""
import sys, torch
from pathlib import Path
from denoise.io import read_image, list_images
from denoise.noise.spec import parse_noise
from denoise.models.user import model_from_path
from denoise.metrics import psnr
torch.set_num_threads(1)
files = list_images(Path("../shared/data/CBSD432"))[-32:]
imgs = []
for f in files:
    x, _ = read_image(f)
    h, w = x.shape[-2:]; t, l = (h - 192) // 2, (w - 192) // 2
    imgs.append(x[..., t:t + 192, l:l + 192].unsqueeze(0) if x.dim() == 3 else x)
models = [model_from_path(p) for p in sys.argv[1:]]
for shot in (3e-4, 1e-3, 3e-3, 1e-2):
    noise = parse_noise(f"camera:shot={shot},q=95,corr=0.75")
    g = torch.Generator().manual_seed(0)
    pin, pout = 0.0, [0.0] * len(models)
    for x in imgs:
        y = noise(x, g).clamp(0, 1)
        pin += float(psnr(y, x))
        with torch.no_grad():
            for i, (_, m) in enumerate(models):
                pout[i] += float(psnr(m(y).clamp(0, 1), x))
    n = len(imgs)
    print(f"shot {shot:g}: input {pin/n:.2f} " + " ".join(f"{lab}: {p/n:.2f} (+{p/n-pin/n:.2f})" for (lab, _), p in zip(models, pout)), flush=True)
