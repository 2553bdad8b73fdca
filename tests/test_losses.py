"""Losses matched to the noise: values, masks, the annealed L0 schedule, and which
statistic of noisy targets each loss recovers."""
import pytest
import torch
import torch.nn.functional as F

from denoise.errors import InputError
from denoise.training.losses import (
    AnnealedL0Loss,
    get_loss,
    l1_loss,
    l2_loss,
    loss_for_noise,
    masked_l2_loss,
    relative_l2_loss,
)


def test_l2_and_l1_match_torch(generator):
    a, b = torch.rand(2, 3, 8, 8, generator=generator), torch.rand(2, 3, 8, 8, generator=generator)
    assert torch.allclose(l2_loss(a, b), F.mse_loss(a, b))
    assert torch.allclose(l1_loss(a, b), F.l1_loss(a, b))


def test_masked_l2_ignores_unknown_target_pixels(generator):
    pred, target = torch.rand(2, 3, 8, 8, generator=generator), torch.rand(2, 3, 8, 8, generator=generator)
    mask = (torch.rand(2, 1, 8, 8, generator=generator) < 0.5).float()
    base = masked_l2_loss(pred, target, mask=mask)
    changed = torch.where(mask.bool().expand_as(target), target, torch.full_like(target, 9.0))
    assert torch.equal(masked_l2_loss(pred, changed, mask=mask), base)
    m = mask.expand_as(pred).bool()
    assert torch.allclose(base, ((pred - target)[m] ** 2).mean())
    assert torch.equal(masked_l2_loss(pred, target), l2_loss(pred, target))


def test_relative_l2_weights_each_sample_by_its_noise_energy(generator):
    clean = torch.rand(2, 3, 16, 16, generator=generator)
    noise = torch.randn(2, 3, 16, 16, generator=generator) * torch.tensor([0.01, 0.2]).view(2, 1, 1, 1)
    noisy = clean + noise
    # Halving each sample's noise leaves a quarter of its energy, whatever its level...
    assert torch.allclose(relative_l2_loss(clean + noise / 2, clean, noisy=noisy), torch.tensor(0.25))
    # ...whereas plain L2 sees only the strong sample: the weak one's error is 400x smaller.
    weak_only = torch.stack([noisy[0], clean[1]])
    assert relative_l2_loss(weak_only, clean, noisy=noisy) == pytest.approx(0.5, rel=1e-5)
    assert l2_loss(weak_only, clean) < 0.01 * l2_loss(noisy, clean)
    with pytest.raises(InputError, match="noisy input"):
        relative_l2_loss(noisy, clean)
    assert get_loss("l2_rel") is relative_l2_loss


def test_annealed_l0_schedule_stops_at_a_positive_floor(generator):
    loss = AnnealedL0Loss(start=2.0, floor=0.1)
    assert loss.gamma(0.0) == 2.0 and loss.gamma(1.0) == pytest.approx(0.1)
    assert loss.gamma(0.5) == pytest.approx(1.05) and loss.gamma(7) == pytest.approx(0.1)
    pred = torch.rand(1, 1, 8, 8, generator=generator, requires_grad=True)
    target = torch.rand(1, 1, 8, 8, generator=generator)
    assert torch.allclose(loss(pred, target, progress=0.0), l2_loss(pred, target), atol=1e-6)
    loss(pred, target, progress=1.0).backward()
    assert pred.grad.abs().sum() > 0  # the gradient has not vanished at the end
    with pytest.raises(InputError):
        AnnealedL0Loss(floor=0.0)


def _best_constant(loss, targets: torch.Tensor, progress: float = 1.0) -> float:
    """The constant on a 0.001 grid of [0, 1] that minimises ``loss`` over ``targets``."""
    grid = torch.linspace(0, 1, 1001)
    values = torch.stack([loss(c.expand_as(targets), targets, progress=progress) for c in grid])
    return float(grid[values.argmin()])


def test_losses_recover_mean_median_and_mode(generator):
    """Noisy targets: L2 -> mean, L1 -> median, annealed L0 -> mode (Noise2Noise, sec. 3)."""
    clean = 0.2
    n = 2000
    impulses = torch.rand(n, generator=generator) < 0.8  # 80 % random-valued impulses
    targets = torch.where(impulses, torch.rand(n, generator=generator), torch.full((n,), clean))
    targets = targets + 0.002 * torch.randn(n, generator=generator)
    mean, median = float(targets.mean()), float(targets.median())
    assert _best_constant(l2_loss, targets) == pytest.approx(mean, abs=1e-3)
    assert _best_constant(l1_loss, targets) == pytest.approx(median, abs=1e-3)
    mode = _best_constant(AnnealedL0Loss(floor=0.05), targets)
    assert abs(mode - clean) < 0.02 < 0.1 < min(abs(median - clean), abs(mean - clean))


@pytest.mark.parametrize("noise,loss", [("gaussian", "l2"), ("poisson", "l2"), ("poissongaussian", "l2"),
                                        ("text", "l1"), ("saltpepper", "l1"), ("impulse", "l0"),
                                        ("bernoulli", "masked_l2")])
def test_loss_matched_to_noise(noise, loss):
    assert loss_for_noise(noise) == loss
    get_loss(loss)  # exists


def test_unknown_names_raise_input_error():
    with pytest.raises(InputError, match="unknown loss"):
        get_loss("l3")
    with pytest.raises(InputError, match="no default loss"):
        loss_for_noise("speckle")
