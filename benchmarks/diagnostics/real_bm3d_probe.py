"""Probe (oracle, diagnostic only): CBM3D on PolyU with sigma = k x the true residual std."""
import sys, torch, numpy as np, bm3d
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from real_photos import load_pairs
from denoise.metrics import psnr
pairs = load_pairs(Path("../shared/data/PolyU"), int(sys.argv[1]))
res = []
for name, n, c in pairs:
    y, x = np.asarray(n, np.float32) / 255, np.asarray(c, np.float32) / 255
    s = float(np.std(y - x))
    row = [float(psnr(torch.from_numpy(y).permute(2,0,1)[None], torch.from_numpy(x).permute(2,0,1)[None])[0])]
    for k in (0.7, 1.0):
        z = bm3d.bm3d_rgb(y, k * s)
        row.append(float(psnr(torch.from_numpy(np.clip(z,0,1).astype(np.float32)).permute(2,0,1)[None], torch.from_numpy(x).permute(2,0,1)[None])[0]))
    res.append(row); print(name, [f"{v:.2f}" for v in row], flush=True)
r = np.array(res).mean(0)
print(f"{len(res)} photos: noisy {r[0]:.2f} cbm3d(0.7 true) {r[1]:.2f} cbm3d(true) {r[2]:.2f}")
