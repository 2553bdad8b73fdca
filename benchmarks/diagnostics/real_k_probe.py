"""Probe: does the model under-remove real noise? x = y - k (y - m(y)) on PolyU."""
import sys, torch, numpy as np
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from real_photos import load_pairs, to_tensor
from denoise.models.user import model_from_path
from denoise.metrics import psnr
torch.set_num_threads(1)
pairs = load_pairs(Path("../shared/data/PolyU"), int(sys.argv[2]))
_, m = model_from_path(sys.argv[1])
ks = (1.0, 1.25, 1.5, 2.0)
res = []
with torch.no_grad():
    for name, n, c in pairs:
        y, x = to_tensor(n), to_tensor(c)
        d = y - m(y)
        res.append([float(psnr(y, x)[0])] + [float(psnr((y - k * d).clamp(0, 1), x)[0]) for k in ks] + [float(psnr(m(m(y)).clamp(0,1), x)[0])])
r = np.array(res).mean(0)
print(f"{len(res)} photos: noisy {r[0]:.2f} " + " ".join(f"k={k}: {v:.2f}" for k, v in zip(ks, r[1:])) + f" twice: {r[-1]:.2f}")
