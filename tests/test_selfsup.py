"""Learning from single noisy images (training/selfsup.py): the Neighbor2Neighbor sampler and
loss, pixel-shuffle downsampling, the blind spot, the Trainer and CLI integration."""
from __future__ import annotations

import json

import pytest
import torch

from denoise.cli.main import main
from denoise.errors import InputError
from denoise.io import write_image
from denoise.models import create_model
from denoise.models.base import Restorer
from denoise.training import TrainConfig, Trainer, read_log
from denoise.training import runlog as R
from denoise.training import selfsup as S

pytestmark = pytest.mark.usefixtures("one_thread")

DIAGONAL = ({0, 3}, {1, 2})


def _net(channels: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("unet-small", pretrained=False, channels=channels, features=4)


class Scale(Restorer):
    """f(x) = a * x, recording whether each call had gradients enabled."""

    def __init__(self, a: float):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(a))
        self.grad_enabled: list[bool] = []

    def forward(self, x, sigma=None):
        self.grad_enabled.append(torch.is_grad_enabled())
        return self.a * x


# --------------------------------------------------------------------------- Neighbor2Neighbor


def test_sampler_takes_two_different_neighbours_of_each_cell(generator):
    y = torch.rand(3, 2, 10, 12, generator=generator)
    g1, g2, (i1, i2) = S.neighbour_pair(y, generator)
    assert g1.shape == g2.shape == (3, 2, 5, 6)
    assert not torch.equal(g1, g2)
    cells = y.reshape(3, 2, 5, 2, 6, 2).permute(0, 1, 2, 4, 3, 5).reshape(3, 2, 5, 6, 4)  # position dy*2+dx
    for g, i in ((g1, i1), (g2, i2)):  # each value is its cell's pixel at the drawn position, all channels
        assert torch.equal(g, cells.gather(-1, i[:, None, :, :, None].expand(3, 2, 5, 6, 1))[..., 0])
    pairs = {frozenset(p) for p in zip(i1.flatten().tolist(), i2.flatten().tolist())}
    assert all(len(p) == 2 for p in pairs)  # two different pixels
    assert not any(set(p) in DIAGONAL for p in pairs)  # horizontal or vertical neighbours
    big1, big2 = S.neighbour_indices(64, 16, 16, generator)
    assert len(set(zip(big1.flatten().tolist(), big2.flatten().tolist()))) == 8  # all 8 ordered pairs


def test_sampler_drops_an_odd_last_row_and_column(generator):
    g1, g2, _ = S.neighbour_pair(torch.rand(1, 1, 7, 9, generator=generator), generator)
    assert g1.shape == g2.shape == (1, 1, 3, 4)


def test_n2n_loss_is_zero_when_consistent_and_positive_otherwise(generator):
    flat = torch.full((2, 3, 8, 8), 0.4)
    identity = Scale(1.0)
    with torch.no_grad():
        assert float(S.n2n_loss(identity, flat, generator, gamma=2.0)) == 0.0
    y = torch.rand(2, 3, 8, 8, generator=generator)
    # the identity is consistent: the regulariser vanishes, the loss is the reconstruction term
    full = S.n2n_loss(identity, y, torch.Generator().manual_seed(1), gamma=2.0)
    recon = S.n2n_loss(identity, y, torch.Generator().manual_seed(1), gamma=0.0)
    assert float(full.detach()) == pytest.approx(float(recon.detach())) and float(recon.detach()) > 0
    assert float(S.n2n_loss(Scale(0.5), y, generator, gamma=2.0).detach()) > 0
    assert float(S.n2n_loss(_net(), y, generator, gamma=2.0).detach()) > 0


def test_n2n_gradient_flows_only_through_the_subimage_pass(generator):
    y = torch.rand(2, 1, 8, 8, generator=generator)
    model, gamma, a = Scale(0.7), 2.0, 0.7
    loss = S.n2n_loss(model, y, torch.Generator().manual_seed(3), gamma=gamma)
    loss.backward()
    assert model.grad_enabled == [True, False]  # f(g1(y)) with gradient, f(y) without
    g1, g2, _ = S.neighbour_pair(y, torch.Generator().manual_seed(3))
    diff, expected = a * g1 - g2, a * (g1 - g2)  # g1(f(y)) - g2(f(y)) for f = a x
    detached = torch.mean(2 * diff * g1) + gamma * torch.mean(2 * (diff - expected) * g1)
    through = detached - gamma * torch.mean(2 * (diff - expected) * (g1 - g2))
    assert float(model.a.grad) == pytest.approx(float(detached), rel=1e-5)
    assert float(model.a.grad) != pytest.approx(float(through), rel=1e-3)


# --------------------------------------------------------------------------- pixel-shuffle downsampling


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_pd_round_trip_is_exact(stride, generator):
    x = torch.rand(2, 3, 6 * stride, 4 * stride, generator=generator)
    z = S.pd_down(x, stride)
    assert z.shape == (2 * stride ** 2, 3, 6, 4)
    assert torch.equal(z[stride ** 2 + (stride - 1) * stride], x[1, :, stride - 1::stride, ::stride])  # n s² + i s + j
    assert torch.equal(S.pd_up(z, stride), x)
    with pytest.raises(InputError, match="multiple of the stride"):
        S.pd_down(torch.rand(1, 1, 5, 6), 2 if stride == 1 else stride)


def test_neighbour_replacement_never_copies_the_pixel_itself(generator):
    z = torch.arange(2 * 7 * 6, dtype=torch.float32).view(2, 1, 7, 6)
    r = S.neighbour_replace(z, generator)
    iy, ix = (r % 42 // 6) - (z % 42 // 6), (r % 6) - (z % 6)  # offsets of the copied pixel
    assert torch.all((iy.abs() <= 1) & (ix.abs() <= 1) & ((iy != 0) | (ix != 0)))
    assert torch.equal(r // 42, z // 42)  # from the same image


def _pixel_jacobian(net, x: torch.Tensor) -> torch.Tensor:
    """|d output pixel / d input pixel|, summed over the channels: (H*W, H*W)."""
    c, n = x.shape[1], x.shape[-2] * x.shape[-1]
    jac = torch.autograd.functional.jacobian(net, x, vectorize=True)
    return jac.reshape(c, n, c, n).abs().sum((0, 2))


@pytest.mark.parametrize("size", [(6, 6), (7, 5)])
def test_blind_spot_output_does_not_depend_on_its_own_input_pixel(size, generator):
    x = torch.rand(1, 3, *size, generator=generator)
    jac = _pixel_jacobian(S.BlindSpotPD(_net(), stride=2), x)
    assert float(jac.diagonal().max()) == 0.0  # no pixel sees itself (any channel)
    assert float(jac.max()) > 0  # but it sees others
    jac = _pixel_jacobian(S.PDRestorer(_net(), stride=2), x)  # the inference model is not blind
    assert float(jac.diagonal().min()) > 0


def test_pd_loss_scores_only_masked_pixels_and_needs_big_enough_subimages(generator):
    y = torch.rand(2, 3, 16, 16, generator=generator)
    model = Scale(1.0)  # the identity: on a masked pixel it returns a neighbour, not the pixel
    loss = S.pd_loss(model, y, torch.Generator().manual_seed(5), stride=2)
    g = torch.Generator().manual_seed(5)  # the same draws, by hand
    z = S.pd_down(y, 2)
    mask = S.grid_mask(8, 8, 8, S.MASK_GRID, torch.randint(S.MASK_GRID, (8, 2), generator=g))
    assert 0 < mask.float().mean() < 0.25
    masked = mask.expand_as(z)
    expected = torch.mean((S.neighbour_replace(z, g)[masked] - z[masked]) ** 2)  # zero error elsewhere
    assert float(loss.detach()) == pytest.approx(float(expected)) and float(expected) > 0
    loss.backward()
    assert model.a.grad is not None
    with pytest.raises(InputError, match="at least 2x2"):
        S.pd_loss(model, torch.rand(1, 1, 4, 4), generator, stride=4)


# --------------------------------------------------------------------------- config and CLI


def _smooth(seed: int, size: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(5):
        write_image(d / f"im{i}.png", _smooth(i))
    return d


def _config(folder, out, **kw) -> TrainConfig:
    base = dict(model="unet-small", model_kwargs={"features": 4}, train_dir=str(folder), noise="gaussian:25",
                target="self", val_count=1, crop=16, batch_size=4, steps=20, checkpoint_every=10,
                log_every=5, lr=1e-3, out=str(out), progress=False, plot=False, threads=1)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("options,message", [
    ({"data": "pairs"}, "--target self learns from single noisy images"),
    ({"self_mode": "bsn"}, "--self-mode must be"),
    ({"target": "noisy", "self_mode": "pd"}, "need --target self"),
    ({"target": "clean", "noise": "none"}, "needs --target self"),
    ({"self_gamma": -1.0}, "--self-gamma must be"),
    ({"self_mode": "pd", "pd_stride": 2, "pd_infer_stride": 3}, "pd_infer_stride <= pd_stride"),
    ({"self_mode": "pd", "pd_stride": 5}, "at least 4 \\* --pd-stride"),
    ({"noise": "bernoulli:0.5"}, "cannot use masked_l2"),
])
def test_config_rejects_bad_combinations(folder, tmp_path, options, message):
    with pytest.raises(InputError, match=message):
        _config(folder, tmp_path / "r", **options).validate()


def test_config_accepts_self_modes_and_picks_the_loss(folder, tmp_path):
    for kw in ({}, {"self_mode": "pd"}, {"noise": "none"}, {"noise": "real", "self_mode": "pd", "pd_stride": 4,
                                                            "pd_infer_stride": 2}):
        _config(folder, tmp_path / "r", **kw).validate()
    assert _config(folder, tmp_path / "r", noise="none").loss_name() == "l2"
    assert _config(folder, tmp_path / "r", noise="impulse:0.3").loss_name() == "l0"


def test_a_model_that_needs_sigma_is_refused(folder, tmp_path):
    with pytest.raises(InputError, match="blind"):
        Trainer(_config(folder, tmp_path / "r", model="ffdnet", model_kwargs={}))


def test_cli_rejects_a_bad_combination_in_one_line(folder, tmp_path, capsys):
    code = main(["train", "--target", "self", "--data", "pairs", "--train-dir", str(folder),
                 "--out", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--target self" in err and "Traceback" not in err


# --------------------------------------------------------------------------- training


def test_n2n_training_runs_validates_against_clean_images_and_resumes_exactly(folder, tmp_path):
    result = Trainer(_config(folder, tmp_path / "a")).fit()
    assert result.step == 20 and result.val_psnr is not None and result.val_psnr > 10
    assert (tmp_path / "a" / R.CHECKPOINT).is_file()
    assert "clean references" in (tmp_path / "a" / "VALIDATION.txt").read_text()
    Trainer(_config(folder, tmp_path / "b", stop_at=10)).fit()
    Trainer(_config(folder, tmp_path / "b")).fit(resume=True)
    losses = [[r["loss"] for r in read_log(tmp_path / d / R.LOG)] for d in "ab"]
    assert losses[0] == losses[1]


@pytest.mark.parametrize("mode", ["pd", "n2n"])
def test_cli_training_on_a_folder_of_noisy_photos(mode, folder, tmp_path, capsys):
    out = tmp_path / mode
    code = main(["train", "--model", "unet-small", "--model-kwargs", '{"features": 4}', "--train-dir", str(folder),
                 "--target", "self", "--self-mode", mode, "--noise", "none", "--val-count", "1", "--crop", "16",
                 "--batch-size", "4", "--steps", "20", "--checkpoint-every", "10", "--out", str(out),
                 "--no-progress", "--no-plot", "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    ckpt = torch.load(out / R.CHECKPOINT, map_location="cpu", weights_only=True)
    assert ckpt["step"] == 20 and json.loads(ckpt["config"])["self_mode"] == mode
    vals = [r["val_psnr"] for r in read_log(out / R.LOG) if r["val_psnr"] is not None]
    assert len(vals) == 2 and all(v > 0 for v in vals)  # the self-supervised figure
    assert "self-supervised" in (out / "VALIDATION.txt").read_text()
    assert "noisy" in capsys.readouterr().out


# --------------------------------------------------------------------------- the benchmark


@pytest.fixture(scope="module")
def claim(benchmark_script):
    return benchmark_script("self_supervised_claim")


def test_benchmark_rows_share_one_budget_and_the_claim_is_judged(claim, tmp_path):
    configs = {row.name: row.config(claim.N2N.FULL, tmp_path, tmp_path / row.name) for row in claim.ROWS}
    per_row = {"target", "self_mode", "out"}
    shared = [{k: v for k, v in c.to_dict().items() if k not in per_row} for c in configs.values()]
    assert all(s == shared[0] for s in shared) and shared[0]["noise"] == "gaussian:25"
    assert [(c.target, c.self_mode) for c in configs.values()] == [
        ("clean", "n2n"), ("noisy", "n2n"), ("self", "n2n"), ("self", "pd")]
    for c in configs.values():
        c.validate()

    def result(kodak, cbsd):
        return {"sets": {"Kodak24_full": {"psnr": kodak, "input_psnr": 20.2, "n_images": 24},
                         "CBSD68": {"psnr": cbsd, "input_psnr": 20.2, "n_images": 68}}, "val_psnr": 25.0}

    rows = {r.name: r for r in claim.ROWS}
    results = {rows["clean"]: result(28.0, 28.0), rows["noisy"]: result(27.6, 27.5),
               rows["self-n2n"]: result(27.3, 27.2), rows["self-pd"]: result(27.3, 26.9)}
    lines = claim.claim_lines(results, ["Kodak24_full", "CBSD68"])
    assert "-0.30 dB on Kodak24_full" in lines[0] and "within 0.5 dB below" in lines[0]
    assert "-0.60 dB on CBSD68" in lines[1] and "**more** than 0.5 dB below" in lines[1]
    table = claim.results_table(results, ["Kodak24_full", "CBSD68"])
    assert "-0.30" in table and "-0.70" in table  # n2n vs noisy on Kodak; vs clean on Kodak
