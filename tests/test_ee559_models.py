"""The EE-559 course models (mini-projects 1 and 2) and the course's module names."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from denoise import scratch
from denoise.ee559 import project1, project2
from denoise.ee559.course import shipped_weights
from denoise.ee559.data import course_psnr, save_torch
from denoise.errors import InputError, ModelError

MODELS = {1: project1.Model, 2: project2.Model}


@pytest.fixture(params=[1, 2], ids=["project1", "project2"])
def model_class(request):
    return MODELS[request.param]


def _pretrained(model_class):
    model = model_class()
    model.load_pretrained_model()
    return model


def _photo_pairs(n: int, sigma: float, seed: int = 0):
    """Smooth random 32x32 'photos' (uint8) with two noisy views; no files needed."""
    g = torch.Generator().manual_seed(seed)
    clean = F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=32, mode="bilinear",
                          align_corners=False).mul(255).round().to(torch.uint8)
    views = [(clean.float() + sigma * torch.randn(clean.shape, generator=g)).round().clamp(0, 255)
             .to(torch.uint8) for _ in range(3)]
    return clean, views


# ----------------------------------------------------------------------------- predict


def test_predict_keeps_shape_and_range(model_class):
    model = model_class()
    x = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(0)) * 255
    out = model.predict(x)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 255 and out.max() > 1


@pytest.mark.parametrize("shape", [(2, 3, 33, 17), (1, 3, 2, 2), (3, 3, 5, 64)])
def test_predict_any_size_uint8(model_class, shape):
    out = model_class().predict(torch.randint(0, 256, shape, dtype=torch.uint8))
    assert out.shape == shape and 0 <= out.min() and out.max() <= 255


def test_predict_uint8_equals_float(model_class):
    model = model_class()
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert torch.equal(model.predict(x), model.predict(x.float()))


@pytest.fixture(scope="module")
def photo_crops(data_root):
    """64 clean and noisy 32x32 crops of CBSD68 photos, made as the course data is."""
    from denoise.ee559.data import noisy_uint8, random_crops
    from denoise.io import list_images, read_image

    photos = [read_image(path)[0][0] for path in list_images(data_root / "CBSD68")[:8]]
    g = torch.Generator().manual_seed(0)
    clean = random_crops(photos, 64, 32, g)
    return clean, noisy_uint8(clean, 24.0 / 255, g)


def test_pretrained_models_denoise_photo_crops(model_class, photo_crops):
    clean, noisy = photo_crops
    out = _pretrained(model_class).predict(noisy)
    assert course_psnr(out, clean) > course_psnr(noisy, clean) + 3


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(0, 3, 32, 32), "empty"),
    (torch.zeros(1, 3, 1, 1), "at least 2x2"),
    (torch.zeros(1, 3, 1, 40), "at least 2x2"),
    (torch.zeros(3, 32, 32), r"\(N, 3, H, W\)"),
    (torch.zeros(1, 1, 32, 32), r"\(N, 3, H, W\)"),
    (torch.zeros(1, 32, 32, 3), r"\(N, 3, H, W\)"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.int64), "uint8 or float"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.bool), "uint8 or float"),
    (torch.full((1, 3, 8, 8), float("nan")), "NaN"),
    ([[0.0]], "torch.Tensor"),
])
def test_predict_rejects_bad_input(model_class, bad, match):
    with pytest.raises(InputError, match=match):
        model_class().predict(bad)


# ----------------------------------------------------------------------------- train


@pytest.mark.parametrize("inputs, epochs, match", [
    ((torch.zeros(4, 3, 8, 8), torch.zeros(5, 3, 8, 8)), 1, "same shape"),
    ((torch.zeros(4, 3, 8, 8), torch.zeros(4, 3, 8, 8)), 0, "num_epochs"),
    ((torch.zeros(4, 3, 8, 8), torch.zeros(4, 3, 8, 8)), 1.0, "num_epochs"),
    ((torch.zeros(0, 3, 8, 8), torch.zeros(0, 3, 8, 8)), 1, "empty"),
    ((torch.zeros(4, 3, 8, 8, dtype=torch.int32), torch.zeros(4, 3, 8, 8)), 1, "uint8 or float"),
])
def test_train_rejects_bad_input(model_class, inputs, epochs, match):
    with pytest.raises(InputError, match=match):
        model_class().train(*inputs, epochs)


def test_training_is_deterministic_and_reports_epochs(model_class):
    _, (a, b, _) = _photo_pairs(16, sigma=24.0)
    states, calls = [], []
    for _ in range(2):
        model = model_class(batch_size=8)
        model.train(a, b, 2, on_epoch=lambda epoch, loss: calls.append((epoch, loss)))
        states.append(model.state_dict())
    assert [c[0] for c in calls] == [1, 2, 1, 2] and all(c[1] > 0 for c in calls)
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    assert any(not torch.equal(states[0][k], v) for k, v in model_class().state_dict().items())


def test_training_from_scratch_learns():
    clean, (a, b, test) = _photo_pairs(160, sigma=24.0, seed=1)
    model = project2.Model(batch_size=8)
    before = course_psnr(model.predict(test), clean)
    model.train(a, b, 2)
    assert course_psnr(model.predict(test), clean) > before + 3


@pytest.mark.slow
def test_training_from_scratch_beats_the_noisy_input(model_class):
    clean, (a, b, test) = _photo_pairs(400, sigma=24.0, seed=1)
    model = model_class(batch_size=8)
    before = course_psnr(model.predict(test), clean)
    model.train(a, b, 2)
    after = course_psnr(model.predict(test), clean)
    assert after > before + 3 and after > course_psnr(test, clean)


def test_train_accepts_odd_sizes_and_floats(model_class):
    _, (a, b, _) = _photo_pairs(6, sigma=10.0)
    model_class(batch_size=4).train(a[..., :30, :27].float(), b[..., :30, :27].float(), 1)


# ----------------------------------------------------------------------------- weights


def test_shipped_weights_and_cards_exist(model_class):
    path = shipped_weights(model_class.weights_name)
    assert path.is_file() and path.with_suffix(".json").is_file()


def test_bestmodel_beside_model_py_is_preferred(model_class, tmp_path):
    shipped = _pretrained(model_class).state_dict()
    changed = {k: v + 0.01 if v.is_floating_point() else v for k, v in shipped.items()}
    save_torch(changed, tmp_path / "bestmodel.pth")

    class Local(model_class):
        bestmodel = tmp_path / "bestmodel.pth"

    loaded = _pretrained(Local).state_dict()
    assert all(torch.equal(loaded[k], changed[k]) for k in changed)
    Local.bestmodel = tmp_path / "absent.pth"  # missing: falls back to the shipped weights
    assert all(torch.equal(v, shipped[k]) for k, v in _pretrained(Local).state_dict().items())


def test_bad_weights_raise_model_errors(model_class, tmp_path):
    (tmp_path / "bestmodel.pth").write_bytes(b"garbage")

    class Local(model_class):
        bestmodel = tmp_path / "bestmodel.pth"

    with pytest.raises(ModelError, match="cannot read"):
        Local().load_pretrained_model()
    state = model_class().state_dict()
    state.pop(next(iter(state)))
    with pytest.raises(ModelError, match="do not fit"):
        model_class().load_state_dict(state)


# ----------------------------------------------------------------------------- course names


@pytest.mark.parametrize("seed", range(5))
def test_course_conv2d_matches_torch_to_default_tolerance(seed):
    torch.manual_seed(seed)
    x = torch.randn(1, 3, 32, 32)
    conv, sigmoid = project2.Conv2d(3, 3, 3), project2.Sigmoid()
    reference = F.conv2d(x, conv.weight, conv.bias)
    assert torch.allclose(conv.forward(x), reference)
    assert torch.allclose(sigmoid.forward(x), torch.sigmoid(x))
    assert torch.allclose(project2.Sequential(conv, sigmoid).forward(x), reference.sigmoid())


@pytest.mark.parametrize("kwargs, bias", [({}, True), ({"stride": 2, "padding": 1}, True),
                                          ({"padding": 2, "dilation": 2}, True),
                                          ({"stride": (1, 2), "padding": (1, 0)}, False)])
def test_course_conv2d_is_the_scratch_layer(kwargs, bias):
    torch.manual_seed(0)
    course = project2.Conv2d(4, 5, 3, bias=bias, **kwargs).double()
    torch.manual_seed(0)
    plain = scratch.Conv2d(4, 5, 3, bias=bias, **kwargs).double()
    x = torch.randn(2, 4, 11, 13, dtype=torch.float64)
    y = course.forward(x)
    torch.testing.assert_close(y, plain.forward(x))
    torch.testing.assert_close(y, F.conv2d(x, course.weight, course.bias, **kwargs))
    grad = torch.randn_like(y)
    torch.testing.assert_close(course.backward(grad), plain.backward(grad))
    torch.testing.assert_close(course.weight.grad, plain.weight.grad)


def test_course_conv2d_is_the_class_the_model_trains_with():
    """One class: the course's names are the scratch layers, which the Model's network is
    built from, and its parameters go into torch functions as they are."""
    assert project2.Conv2d is scratch.Conv2d and project2.Upsampling is scratch.Upsampling
    assert project2.TransposeConv2d is scratch.TransposeConv2d
    net = project2.Model().net
    convs = [m for m in net.modules() if isinstance(m, project2.Conv2d)]
    assert len(convs) == 4 and all(type(m) is project2.Conv2d for m in convs)
    first = net[0]
    x = torch.rand(1, 3, 16, 12, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(first.forward(x), F.conv2d(x, first.weight, first.bias, stride=2, padding=1))


def test_shipped_project2_weights_give_the_pinned_outputs():
    """Outputs of the shipped weights on a fixed input, recorded before the scratch kernels
    were reorganised (one reference convolution, the course's Conv2d the scratch layer)."""
    model = _pretrained(project2.Model)
    x = torch.rand(2, 3, 8, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model.net(x)
    expected = torch.tensor([[0.6203934550285339, 0.5709378123283386, 0.5866004824638367],
                             [0.5662800073623657, 0.5914588570594788, 0.6415192484855652]])
    torch.testing.assert_close(torch.stack([y[0, :, 3, 5], y[1, :, 0, 11]]), expected, rtol=0, atol=1e-6)
    assert abs(y.double().mean().item() - 0.4931743413520356) < 1e-6


def test_course_parameters_work_in_torch_functions():
    torch.manual_seed(0)
    up = project2.TransposeConv2d(4, 2, 2, stride=2)
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(up.forward(x), F.conv_transpose2d(x, up.weight, up.bias, stride=2))
    ups = project2.Upsampling(4, 2, 3, scale_factor=2, padding=1)
    assert set(ups.state_dict()) == {"1.weight", "1.bias"}
    expected = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), ups[1].weight, ups[1].bias,
                        padding=1)
    torch.testing.assert_close(ups.forward(x), expected)
    assert isinstance(up.weight, project2.TensorParameter) and up.weight.grad.shape == up.weight.shape


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (2, 3, 2, 3), (1, 3, 33, 17), (1, 3, 32, 32)])
def test_project2_padding_without_torch_nn_matches_the_library(shape):
    from denoise.models.unet import pad_to_multiple

    x = torch.rand(shape)
    padded, size = project2.pad_to_multiple(x, 4)
    expected, expected_size = pad_to_multiple(x, 4)
    assert size == expected_size and torch.equal(padded, expected)


def test_course_names_train_with_sgd_and_mse():
    torch.manual_seed(0)
    net = project2.Sequential(project2.Conv2d(3, 8, 3, padding=1), project2.ReLU(),
                              project2.NearestUpsampling(2), project2.Conv2d(8, 3, 3, stride=2, padding=1),
                              project2.Sigmoid())
    criterion, optimizer = project2.MSE(), project2.SGD(net.parameters(), lr=2.0, momentum=0.9)
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    target = 0.5 * x + 0.25  # a map the network can represent
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        losses.append(float(criterion(net(x), target)))
        net.backward(criterion.backward())
        optimizer.step()
    assert losses[-1] < 0.5 * losses[0]
