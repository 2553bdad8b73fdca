"""Probe: the noise-level estimate over the true residual RMS on synthetic camera noise (held-out CBSD432)."""
import torch, numpy as np
from pathlib import Path
from denoise.io import read_image, list_images
from denoise.noise.spec import parse_noise
from denoise.noise_level import estimate_noise_level
torch.set_num_threads(1)
files = list_images(Path("../shared/data/CBSD432"))[-32:]
for spec in ("camera:shot=0.0003,q=95,corr=0.75", "camera:shot=0.0003,q=95,corr=0", "camera:shot=0.0003,q=95,corr=1.5",
             "camera:shot=0.001,q=95,corr=0.75", "camera:shot=0.003,q=90,corr=0.75"):
    noise = parse_noise(spec); g = torch.Generator().manual_seed(0); r = []
    for f in files:
        x, _ = read_image(f); x = x[None] if x.dim() == 3 else x
        y = noise(x, g).clamp(0, 1)
        true = float(((y - x) ** 2).mean().sqrt()) * 255
        est = float((estimate_noise_level(y).to_map(y) ** 2).mean().sqrt()) * 255
        r.append((true, est))
    r = np.array(r)
    print(f"{spec}: true {r[:,0].mean():.2f} est {r[:,1].mean():.2f} ratio median {np.median(r[:,1]/r[:,0]):.2f}", flush=True)
