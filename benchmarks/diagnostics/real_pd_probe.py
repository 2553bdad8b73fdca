"""Probe: pixel-shuffle downsampling (stride s) at inference on PolyU with a real-photo model."""
import sys, torch, numpy as np
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from real_photos import load_pairs, to_tensor
from denoise.models.user import model_from_path
from denoise.metrics import psnr
torch.set_num_threads(1)
pairs = load_pairs(Path("../shared/data/PolyU"), int(sys.argv[2]))
_, m = model_from_path(sys.argv[1])
def pd(y, s):
    out = torch.zeros_like(y)
    for i in range(s):
        for j in range(s):
            out[..., i::s, j::s] = m(y[..., i::s, j::s])
    return out
res = []
with torch.no_grad():
    for name, n, c in pairs:
        y, x = to_tensor(n), to_tensor(c)
        r = [float(psnr(y, x)[0]), float(psnr(m(y).clamp(0, 1), x)[0]), float(psnr(pd(y, 2).clamp(0, 1), x)[0])]
        res.append(r)
r = np.array(res).mean(0)
print(f"{len(res)} photos: noisy {r[0]:.2f} direct {r[1]:.2f} pd2 {r[2]:.2f}")
