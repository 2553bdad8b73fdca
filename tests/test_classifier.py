"""The CIFAR classifier with the DSC encoder as trunk: shapes, the weight copy from a denoiser
(exact, and refused on mismatched shapes), the CIFAR10 folder loader (real data, skipped when
absent), augmentation and balanced splits, a short training run that lowers the loss, exact
resume from a checkpoint, and the perceptual loss (zero on identical images, gradient to the
output only, classifier frozen), with the trivial minimiser a loss network on batch statistics
has: a darkened output whose features equal the target's."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from denoise.errors import InputError, ModelError, TrainingError
from denoise.models.classifier import (
    DSCClassifier,
    init_from_denoiser,
    load_classifier,
    save_classifier,
)
from denoise.models.rednet import GatedDSC, REDNet
from denoise.training.cifar import (
    CIFAR10_CLASSES,
    ClassifierConfig,
    LabelledImages,
    augment,
    evaluate,
    finished_history,
    learning_rate,
    load_cifar,
    per_class_split,
    record_history,
    to_float,
    train_classifier,
)
from denoise.training.perceptual import FeatureLoss, calibrate

pytestmark = pytest.mark.usefixtures("one_thread")


def _classifier(seed: int = 0, **kwargs) -> DSCClassifier:
    torch.manual_seed(seed)
    return DSCClassifier(**kwargs)


def _random_dsc(seed: int = 1, channels: int = 3) -> GatedDSC:
    """A DSC with random weights and biases everywhere (its init has zero biases)."""
    torch.manual_seed(seed)
    dsc = GatedDSC(channels=channels)
    with torch.no_grad():
        for p in dsc.parameters():
            p.normal_(0, 0.1)
    return dsc


def _synthetic(n_per_class: int = 4, classes: int = 10, seed: int = 0) -> LabelledImages:
    """Learnable 16x16 images: class c is a noisy image of mean colour c / classes."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    base = (labels.float() / classes).view(-1, 1, 1, 1) * torch.tensor([1.0, 0.5, 0.2]).view(1, 3, 1, 1)
    x = (base + 0.05 * torch.randn(len(labels), 3, 16, 16, generator=g)).clamp(0, 1)
    return LabelledImages((x * 255).round().to(torch.uint8), labels, tuple(f"c{i}" for i in range(classes)))


# ---------------------------------------------------------------- the network


def test_shapes_follow_the_dsc_encoder():
    m = _classifier().eval()
    x = torch.rand(2, 3, 32, 32)
    assert m(x).shape == (2, 10)
    feats = m.features(x, [1, 2, 3, 4, 5])
    assert [tuple(f.shape) for f in feats] == [(2, 64, 32, 32), (2, 64, 16, 16), (2, 128, 8, 8), (2, 256, 4, 4),
                                               (2, 512, 2, 2)]
    assert all((f >= 0).all() for f in feats)  # after ReLU
    dsc = GatedDSC()
    assert [(c.weight.shape, c.stride) for c in m.convs] == [(c.weight.shape, c.stride) for c in dsc.convs]
    # the trunk is convolutional: other sizes and gray work; extras per stage
    assert DSCClassifier(channels=1).eval()(torch.rand(1, 1, 40, 24)).shape == (1, 10)
    m2 = DSCClassifier(extra=(1, 0, 0, 0, 2), num_classes=4)
    assert [len(e) for e in m2.extras] == [1, 0, 0, 0, 2] and m2.eval()(x).shape == (2, 4)
    assert m2.features(x, [5, 1])[1].shape == (2, 64, 32, 32)


@pytest.mark.parametrize("kwargs", [dict(channels=2), dict(extra=-1), dict(extra=(1, 1)), dict(extra=True),
                                    dict(dropout=1.0), dict(num_classes=1)])
def test_bad_arguments(kwargs):
    with pytest.raises(InputError):
        DSCClassifier(**kwargs)


def test_bad_feature_layers():
    m = _classifier()
    for layers in ([], [0], [6]):
        with pytest.raises(InputError, match="stages"):
            m.features(torch.rand(1, 3, 8, 8), layers)


def test_init_from_denoiser_copies_exactly_the_encoder():
    dsc = _random_dsc()
    clf = _classifier(extra=1)
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    names = init_from_denoiser(clf, dsc)
    after = clf.state_dict()
    for i in range(5):
        assert torch.equal(clf.convs[i].weight, dsc.convs[i].weight)
        assert torch.equal(clf.convs[i].bias, dsc.convs[i].bias)
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed == set(names) == {f"convs.{i}.{w}" for i in range(5) for w in ("weight", "bias")}
    with torch.no_grad():  # a copy, not shared storage
        dsc.convs[0].weight.add_(1.0)
    assert not torch.equal(clf.convs[0].weight, dsc.convs[0].weight)
    # the copied first layer computes what the denoiser's computes
    x = torch.rand(1, 3, 16, 16)
    dsc = _random_dsc()
    assert torch.equal(clf.convs[0](x), dsc.convs[0](x))
    h = torch.rand(1, 64, 16, 16)
    assert torch.equal(clf.convs[1](h), dsc.convs[1](h))


def test_init_from_denoiser_refuses_mismatches_and_copies_nothing():
    clf = _classifier()
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    with pytest.raises(ModelError, match=r"encoder conv 1 weight is \(64, 3, 3, 3\).*\(64, 1, 3, 3\).*gray"):
        init_from_denoiser(clf, _random_dsc(channels=1))
    with pytest.raises(ModelError, match="GatedDSC"):
        init_from_denoiser(clf, REDNet(depth=6))
    assert all(torch.equal(v, before[k]) for k, v in clf.state_dict().items())


def test_save_and_load(tmp_path):
    clf = _classifier(extra=(0, 1, 0, 0, 0), dropout=0.1).eval()
    path = save_classifier(tmp_path / "c.safetensors", clf, CIFAR10_CLASSES)
    back, classes = load_classifier(path)
    assert classes == list(CIFAR10_CLASSES) and back.extra == (0, 1, 0, 0, 0) and not back.training
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(back(x), clf(x))
    with pytest.raises(ModelError, match="not found"):
        load_classifier(tmp_path / "missing.safetensors")


# ---------------------------------------------------------------- data


def test_cifar_loader_reads_the_real_folder(data_root):
    root = data_root / "CIFAR10"
    if not root.is_dir():
        pytest.skip("CIFAR10 not in the data folder")
    test = load_cifar(root, "test", per_class=3)
    assert test.images.shape == (30, 3, 32, 32) and test.images.dtype == torch.uint8
    assert test.classes == CIFAR10_CLASSES and test.counts() == [3] * 10
    assert load_cifar(root, "test", per_class=3) is test  # read once
    # every folder is a class: 1000 train and 500 test images per class
    for split, n in (("train", 1000), ("test", 500)):
        folders = sorted(p.name for p in (root / split).iterdir() if p.is_dir())
        assert folders == sorted(CIFAR10_CLASSES)
        assert all(len(list((root / split / c).glob("*.png"))) == n for c in folders)
    # the README's known labels: train images 0 (frog) and 1 (truck), test 0 (cat), 3 (airplane);
    # the first image of a class is the one with the lowest original index
    import numpy as np
    from PIL import Image

    train = load_cifar(root, "train", per_class=1)
    for split, data, index, name in (("train", train, 0, "frog"), ("train", train, 1, "truck"),
                                     ("test", test, 0, "cat"), ("test", test, 3, "airplane")):
        label = CIFAR10_CLASSES.index(name)
        pixels = torch.from_numpy(np.array(Image.open(root / split / name / f"{index}_{name}.png").convert("RGB")))
        first = int(torch.nonzero(data.labels == label)[0])
        assert torch.equal(data.images[first], pixels.permute(2, 0, 1))
    with pytest.raises(InputError, match="split"):
        load_cifar(root, "val")


def test_per_class_split_is_balanced_disjoint_and_seeded():
    labels = torch.arange(10).repeat(20)
    chosen, rest = per_class_split(labels, 5, seed=0)
    assert torch.bincount(labels[chosen]).tolist() == [5] * 10
    assert torch.bincount(labels[rest]).tolist() == [15] * 10
    assert sorted(torch.cat([chosen, rest]).tolist()) == list(range(200))
    assert torch.equal(per_class_split(labels, 5, seed=0)[0], chosen)
    assert not torch.equal(per_class_split(labels, 5, seed=1)[0], chosen)
    with pytest.raises(InputError, match="fewer"):
        per_class_split(labels, 21, seed=0)


def test_augment_crops_and_flips():
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment(images, g, pad=0, flip=False), to_float(images))
    flipped = augment(images, g, pad=0, flip=True)
    x = to_float(images)
    kinds = [bool(torch.equal(f, a)) + 2 * bool(torch.equal(f, a.flip(-1))) for f, a in zip(flipped, x)]
    assert set(kinds) == {1, 2}  # each image kept or mirrored, both happen
    out = augment(images, torch.Generator().manual_seed(3), pad=2)
    assert out.shape == (6, 3, 8, 8) and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    # each output is a crop of the zero-padded image, mirrored or not; the draws are seeded
    padded = F.pad(x, (2, 2, 2, 2))
    for o, p in zip(out, padded):
        crops = [c for t in range(5) for le in range(5) for c in (p[:, t:t + 8, le:le + 8],)]
        assert any(torch.equal(o, c) or torch.equal(o, c.flip(-1)) for c in crops)
    assert torch.equal(augment(images, torch.Generator().manual_seed(3), pad=2), out)


def test_one_cycle_schedule():
    cfg = ClassifierConfig(lr=0.2, warmup=0.2)
    assert learning_rate(0, 100, cfg) == pytest.approx(0.2 / 25)
    assert learning_rate(20, 100, cfg) == pytest.approx(0.2)
    assert learning_rate(60, 100, cfg) == pytest.approx(0.1)
    assert learning_rate(100, 100, cfg) == pytest.approx(0.0)


# ---------------------------------------------------------------- training


def test_a_few_steps_lower_the_loss():
    data = _synthetic(n_per_class=4)
    model = _classifier()
    before = evaluate(model, data)
    cfg = ClassifierConfig(epochs=6, batch_size=10, lr=0.05, warmup=0.0, pad=0, flip=False, label_smoothing=0.0,
                           weight_decay=0.0)
    history = train_classifier(model, data, cfg, evals={"train": data}, progress=False)
    after = evaluate(model, data)
    assert [r["epoch"] for r in history] == list(range(1, 7))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert after["loss"] < 0.75 * before["loss"] and after["accuracy"] > before["accuracy"] + 0.2


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    data = _synthetic(n_per_class=2)
    cfg = ClassifierConfig(epochs=3, batch_size=8, lr=0.05, pad=2, seed=3)
    whole = _classifier(dropout=0.2)
    h_whole = train_classifier(whole, data, cfg, out=tmp_path / "a", progress=False)
    part = _classifier(dropout=0.2)
    train_classifier(part, data, cfg, out=tmp_path / "b", progress=False, stop_after=1)
    resumed = _classifier(seed=7, dropout=0.2)  # weights come from the checkpoint
    h_resumed = train_classifier(resumed, data, cfg, out=tmp_path / "b", progress=False)
    strip = [{k: v for k, v in r.items() if k != "wall_s"} for r in h_whole]
    assert [{k: v for k, v in r.items() if k != "wall_s"} for r in h_resumed] == strip
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
    with pytest.raises(TrainingError, match="another budget"):
        train_classifier(_classifier(dropout=0.2), data, ClassifierConfig(epochs=4, batch_size=8), out=tmp_path / "b",
                         progress=False)


# ---------------------------------------------------------------- perceptual loss


def _trained_bn(model: DSCClassifier) -> DSCClassifier:
    """Non-trivial BatchNorm statistics, as after training."""
    with torch.no_grad():
        for norm in model.norms:
            norm.running_mean.normal_(0, 0.2)
            norm.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_feature_loss_zero_on_identical_images_positive_otherwise():
    loss = FeatureLoss(_trained_bn(_classifier()), layers=(1, 2, 3), pixel_weight=1.0)
    x = torch.rand(2, 3, 24, 24)
    assert float(loss(x, x.clone())) == 0.0
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert float(loss(y, x)) > 0
    assert float(loss.feature_term(y, x)) > 0


def test_feature_loss_gradient_reaches_the_output_only():
    clf = _trained_bn(_classifier())
    state = {k: v.clone() for k, v in clf.state_dict().items()}
    loss = FeatureLoss(clf, layers=(2, 3)).train()  # asking for train mode keeps the classifier in eval
    assert not clf.training and not any(p.requires_grad for p in clf.parameters())
    pred = torch.rand(2, 3, 16, 16, requires_grad=True)
    target = torch.rand(2, 3, 16, 16, requires_grad=True)
    loss(pred, target).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert target.grad is None
    assert all(p.grad is None for p in clf.parameters())
    # BatchNorm statistics are not updated
    assert all(torch.equal(v, state[k]) for k, v in clf.state_dict().items())


def test_feature_loss_on_gray_repeats_the_channel_and_calibration():
    loss = FeatureLoss(_trained_bn(_classifier()))
    a, b = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    assert torch.allclose(loss(a, b), loss(a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)))
    c = calibrate(loss, a, b)
    scaled = FeatureLoss(loss.classifier, feature_weight=c)
    assert float(scaled(a, b)) == pytest.approx(float(F.mse_loss(a, b)), rel=1e-5)
    with pytest.raises(InputError):
        FeatureLoss(loss.classifier, feature_weight=0.0, pixel_weight=0.0)
    with pytest.raises(InputError):
        FeatureLoss(loss.classifier, layers=(7,))


def test_batch_statistics_make_dark_images_trivial_minimisers():
    """Why the loss network must be frozen in eval mode: with BatchNorm on batch statistics
    (a loss network left in train mode), conv + BN cancels any positive scaling of the whole
    batch (zero padding scales too), so a darkened output has the target's features exactly
    (up to BN's eps) and a feature-only loss cannot tell it from the target. FeatureLoss
    uses the running statistics by default, under which the darkened image costs a loss."""
    clf = _trained_bn(_classifier())
    state = {k: v.clone() for k, v in clf.state_dict().items()}
    target = torch.rand(4, 3, 16, 16)
    dark, black = 0.1 * target, torch.zeros_like(target)
    frozen = FeatureLoss(clf, layers=(1, 2, 3))
    batch = FeatureLoss(clf, layers=(1, 2, 3), batch_statistics=True)
    assert batch.classifier.training and not frozen.classifier.training
    assert float(batch(dark, target)) < 1e-4 * float(frozen(black, target))
    assert float(frozen(dark, target)) > 0.1 * float(frozen(black, target))
    batch.train().eval()
    assert batch.classifier.training  # stays on batch statistics
    # neither the caller's classifier nor the copy's running statistics move
    assert all(torch.equal(v, state[k]) for k, v in clf.state_dict().items())
    assert all(torch.equal(v, state[k]) for k, v in batch.classifier.state_dict().items()
               if not k.endswith("num_batches_tracked"))


def test_finished_history_is_reused_only_for_the_same_card(tmp_path):
    card = {"config": {"epochs": 2, "size": (32, 32)}, "init": "default"}
    history = [{"epoch": 1, "test_accuracy": 0.25}, {"epoch": 2, "test_accuracy": 0.5}]
    assert finished_history(tmp_path, card) is None  # nothing there yet
    record_history(tmp_path, card, history)
    assert finished_history(tmp_path, card) == history  # tuples read back as lists still match
    assert finished_history(tmp_path, {**card, "init": "denoiser"}) is None
    assert finished_history(tmp_path, {**card, "config": {"epochs": 3, "size": (32, 32)}}) is None
