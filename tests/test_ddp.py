"""DistributedDataParallel: 2 CPU processes (gloo, under torchrun) reach the same weights as
one process with the same global batch."""
import json
import os
import subprocess
import sys

import pytest
import torch

from denoise.io import write_image
from denoise.training import TrainConfig, Trainer, read_log
from denoise.training import trainer as T


def _images(folder):
    folder.mkdir()
    for i in range(5):
        g = torch.Generator().manual_seed(i)
        x = torch.nn.functional.interpolate(torch.rand(1, 1, 6, 6, generator=g), size=(24, 24), mode="bilinear")
        write_image(folder / f"im{i}.png", x)


def test_each_process_trains_on_its_slice_of_the_global_batch(tmp_path):
    _images(tmp_path / "imgs")
    cfg = TrainConfig(model="unet-small", model_kwargs={"features": 4}, train_dir=str(tmp_path / "imgs"),
                      val_count=1, crop=16, batch_size=4, out=str(tmp_path / "r"), threads=1)
    old = torch.get_num_threads()
    try:
        trainer = Trainer(cfg)
    finally:
        torch.set_num_threads(old)
    batch = torch.arange(8.0).view(4, 2)
    trainer.dist = T.Dist(rank=1, world=2)
    assert torch.equal(trainer._local(batch), batch[2:])
    trainer.dist = T.Dist(rank=0, world=2)
    assert torch.equal(trainer._local(batch), batch[:2])


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    _images(tmp_path / "imgs")
    options = dict(model="unet-small", model_kwargs={"features": 4}, train_dir=str(tmp_path / "imgs"),
                   val_count=1, crop=16, batch_size=4, steps=3, checkpoint_every=10, log_every=1, lr=1e-3,
                   threads=1, progress=False, plot=False)
    (tmp_path / "c.json").write_text(json.dumps(options))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "denoise", "train", "--config", str(tmp_path / "c.json"), "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    old = torch.get_num_threads()
    try:
        Trainer(TrainConfig(**options, out=str(tmp_path / "one"))).fit()
    finally:
        torch.set_num_threads(old)

    ddp = torch.load(tmp_path / "ddp" / T.CHECKPOINT, weights_only=True)
    one = torch.load(tmp_path / "one" / T.CHECKPOINT, weights_only=True)
    assert ddp["world_size"] == 2 and one["world_size"] == 1
    assert ddp["step"] == one["step"] == 3
    for k, v in one["model"].items():
        torch.testing.assert_close(ddp["model"][k], v, rtol=1e-4, atol=1e-5)
    start = Trainer(TrainConfig(**options, out=str(tmp_path / "unused"))).model.state_dict()
    assert any(not torch.allclose(start[k], one["model"][k]) for k in start)  # training moved the weights
    losses = lambda d: [r["loss"] for r in read_log(tmp_path / d / T.LOG)]  # noqa: E731
    assert losses("ddp") == pytest.approx(losses("one"), rel=1e-4)
