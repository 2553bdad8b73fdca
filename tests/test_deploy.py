"""``denoise export`` / :func:`denoise.deploy.export_model`: ONNX and TorchScript files that
reproduce the PyTorch models at image sizes other than the traced one, their refusals, and
the padding path used while tracing (equal to the eager one)."""
from __future__ import annotations

import argparse
import importlib
import json
import sys

import pytest
import torch

from denoise.deploy import CHECK_SHAPE, EXAMPLE_SHAPE, export_model
from denoise.errors import InputError, MissingDependencyError, ModelError, OutputError
from denoise.models.base import Restorer
from denoise.models.ffdnet import FFDNet
from denoise.models.registry import create_model, get_entry
from denoise.models.unet import pad_to_multiple, pad_to_multiple_traceable

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")]

SHIPPED = ["n2n-unet-gray", "n2n-unet-color", "ee559-project1"]
#: (N, H, W) other than the traced example: odd sides, a batch, and an image smaller than the
#: padding (the reflection repeats).
SIZES = [(1, 45, 61), (2, 64, 96), (1, 5, 3)]


def images(n: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def varying_map(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A noise map that changes across the image: a ramp from 5 to 50 (0-255) plus jitter."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(5 / 255, 50 / 255, h).view(1, 1, h, 1).expand(n, 1, h, w)
    return (ramp + 0.01 * torch.rand(n, 1, h, w, generator=g)).contiguous()


def pytorch(model, x, sigma=None) -> torch.Tensor:
    with torch.inference_mode():
        return model(x, sigma)


def perturbed_ffdnet(channels: int = 1) -> FFDNet:
    """An FFDNet whose every weight and BN statistic is non-trivial (the fresh one has a zero
    last conv, so its output would be its input)."""
    torch.manual_seed(0)
    model = FFDNet(channels=channels, features=16, layers=5)
    g = torch.Generator().manual_seed(1)
    for tensor in model.state_dict().values():
        if tensor.is_floating_point():
            tensor.add_(0.05 * torch.randn(tensor.shape, generator=g))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0, generator=g)
    return model.eval()


def ort_session(path):
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, **feeds) -> torch.Tensor:
    return torch.from_numpy(session.run(["output"], {k: v.numpy() for k, v in feeds.items()})[0])


def onnx_ready():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")


# ------------------------------------------------------------------ the traceable padding

@pytest.mark.parametrize("multiple", [2, 8, 32])
def test_traceable_padding_equals_the_loop(multiple):
    """The padding used while tracing gives exactly the eager loop's values, sizes 1 to 70."""
    for h in range(1, 71):
        for w in (1, 2, 3, 17, 33, 64):
            x = images(1, 1, h, w, seed=h)
            a, size_a = pad_to_multiple(x, multiple)
            b, size_b = pad_to_multiple_traceable(x, multiple)
            assert size_a == size_b and torch.equal(a, b), (h, w)


def test_examples_are_other_sizes():
    """The traced example, the check batch and the test sizes all differ (odd ones included);
    the check's sides have the other parity than the example's."""
    sizes = {EXAMPLE_SHAPE[1:], CHECK_SHAPE[1:], *(s[1:] for s in SIZES)}
    assert len(sizes) == 2 + len(SIZES) and any(h % 2 or w % 2 for h, w in sizes)
    assert all((a - b) % 2 for a, b in zip(EXAMPLE_SHAPE[1:], CHECK_SHAPE[1:]))
    assert EXAMPLE_SHAPE[0] != CHECK_SHAPE[0]


# ------------------------------------------------------------------ ONNX

@pytest.mark.parametrize("name", SHIPPED)
def test_onnx_matches_pytorch_at_other_sizes(tmp_path, name):
    onnx_ready()
    import onnx

    path = tmp_path / f"{name}.onnx"
    result = export_model(name, path, format="onnx")
    assert result.path == path and path.is_file() and result.trained
    assert result.checked_with == "onnxruntime" and result.max_difference < 1e-4
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left

    model = create_model(name)
    c = model.channels
    session = ort_session(path)
    assert [i.name for i in session.get_inputs()] == ["image"]
    for n, h, w in SIZES:
        x = images(n, c, h, w, seed=h)
        out = run_onnx(session, image=x)
        assert out.shape == (n, c, h, w)
        assert (out - pytorch(model, x)).abs().max() < 1e-4

    proto = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", c, "H", "W"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["denoise.model"] == name and meta["denoise.value_range"] == "0-1"
    assert json.loads(meta["denoise.inputs"])[0]["name"] == "image"
    assert "image" in proto.doc_string and "0-1 scale" in proto.doc_string


def test_onnx_ffdnet_takes_a_spatially_varying_noise_map(tmp_path):
    onnx_ready()
    import onnx

    model = perturbed_ffdnet(1)
    path = tmp_path / "ffdnet.onnx"
    result = export_model(model, path)
    assert [i["name"] for i in result.inputs] == ["image", "sigma"]
    session = ort_session(path)
    assert [i.name for i in session.get_inputs()] == ["image", "sigma"]
    for n, h, w in SIZES:
        x, sigma = images(n, 1, h, w, seed=w), varying_map(n, h, w, seed=h)
        out = run_onnx(session, image=x, sigma=sigma)
        ref = pytorch(model, x, sigma)
        assert (ref - x).abs().max() > 1e-2  # the network does something
        assert (out - ref).abs().max() < 1e-4
    # a constant map is one noise level: the same as PyTorch given the number
    x = images(1, 1, 45, 61)
    out = run_onnx(session, image=x, sigma=torch.full((1, 1, 45, 61), 25 / 255))
    assert (out - pytorch(model, x, 25 / 255)).abs().max() < 1e-4
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["denoise.sigma_scale"].startswith("0-1")
    assert "sigma" in onnx.load(str(path)).doc_string


def test_onnx_registered_ffdnet(tmp_path):
    """The name "ffdnet" (an architecture: random weights, with a warning), and the trained
    ffdnet-gray and ffdnet-color when their weights ship."""
    onnx_ready()
    names = ["ffdnet"] + [n for n in ("ffdnet-gray", "ffdnet-color") if get_entry(n).has_weights()]
    for name in names:
        channels = 3 if name == "ffdnet-color" else 1
        path = tmp_path / f"{name}.onnx"
        torch.manual_seed(0)  # the same random weights below
        if name == "ffdnet":
            with pytest.warns(UserWarning, match="random"):
                assert not export_model(name, path, channels=1).trained
        else:
            assert export_model(name, path).trained
        torch.manual_seed(0)
        model = create_model(name, pretrained=name != "ffdnet", channels=channels)
        session = ort_session(path)
        for n, h, w in SIZES:
            x, sigma = images(n, channels, h, w), varying_map(n, h, w)
            assert (run_onnx(session, image=x, sigma=sigma) - pytorch(model, x, sigma)).abs().max() < 1e-4


def test_onnx_self_ensemble(tmp_path):
    """NAME+x8: the eight symmetries are in the graph (as flips and transposes)."""
    onnx_ready()
    path = tmp_path / "x8.onnx"
    export_model("ee559-project1+x8", path)
    from denoise.models.ensemble import SelfEnsemble

    model = SelfEnsemble(create_model("ee559-project1"))
    x = images(1, 3, 45, 61)
    assert (run_onnx(ort_session(path), image=x) - pytorch(model, x)).abs().max() < 1e-4


def test_without_onnxruntime_the_trace_is_checked(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    from denoise import deploy

    monkeypatch.setattr(deploy, "_run_onnxruntime", lambda data, feeds: None)
    result = export_model("ee559-project1", tmp_path / "m.onnx")
    assert result.checked_with == "torch" and result.max_difference < 1e-4


def test_onnx_without_the_onnx_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(MissingDependencyError, match=r"denoise\[onnx\]"):
        export_model("ee559-project1", tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ TorchScript

@pytest.mark.parametrize("name", ["n2n-unet-gray", "ffdnet"])
def test_torchscript_matches_pytorch_at_other_sizes(tmp_path, name):
    model = create_model(name) if name != "ffdnet" else perturbed_ffdnet(1)
    path = tmp_path / f"{name}.pt"
    result = export_model(name if name != "ffdnet" else model, path, format="torchscript")
    assert result.checked_with == "torch" and result.max_difference < 1e-5
    extra = {"denoise.json": ""}
    loaded = torch.jit.load(str(path), _extra_files=extra)
    meta = json.loads(extra["denoise.json"])
    assert meta["denoise.format"] == "torchscript" and "0-1 scale" in meta["doc"]
    for n, h, w in SIZES:
        x = images(n, 1, h, w, seed=h)
        sigma = varying_map(n, h, w) if model.uses_sigma else None
        with torch.inference_mode():
            out = loaded(x, sigma) if sigma is not None else loaded(x)
        assert out.shape == (n, 1, h, w)
        assert (out - pytorch(model, x, sigma)).abs().max() < 1e-5


# ------------------------------------------------------------------ refusals

@pytest.mark.parametrize("name", ["dct", "nlm", "bm3d"])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_classical_models_are_refused_in_one_line(tmp_path, name, fmt):
    with pytest.raises(InputError) as info:
        export_model(name, tmp_path / "m.onnx", format=fmt)
    message = str(info.value)
    assert "\n" not in message and "classical" in message and "n2n-unet-gray" in message
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_existing_file_needs_overwrite(tmp_path):
    path = tmp_path / "m.pt"
    path.write_text("keep me")
    with pytest.raises(OutputError, match="--force"):
        export_model("ee559-project1", path, format="torchscript")
    assert path.read_text() == "keep me"
    export_model("ee559-project1", path, format="torchscript", overwrite=True)
    torch.jit.load(str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


class SizeDependent(Restorer):
    """A model whose Python branch on the image size would be frozen by tracing."""

    def forward(self, x, sigma=None):
        return x * 2 if x.shape[-1] % 2 else x


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_an_export_that_does_not_reproduce_the_model_is_refused(tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnx")
    model = SizeDependent()
    model.channels = 1
    with pytest.raises(ModelError, match="differs from PyTorch"):
        export_model(model, tmp_path / "m", format=fmt)
    assert not list(tmp_path.iterdir())


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="format"):
        export_model("ee559-project1", tmp_path / "m", format="tflite")
    with pytest.raises(InputError, match="gray images only"):
        export_model("n2n-unet-gray", tmp_path / "m.pt", format="torchscript", channels=3)
    with pytest.raises(InputError, match="channels=1 or 3"):
        export_model("default", tmp_path / "m.pt", format="torchscript")
    with pytest.raises(ModelError, match="unknown model"):
        export_model("no-such-model", tmp_path / "m.pt", format="torchscript")
    with pytest.raises(OutputError, match="does not exist"):
        export_model("ee559-project1", tmp_path / "no" / "m.pt", format="torchscript")
    if not get_entry("ffdnet-gray").has_weights():
        with pytest.raises(ModelError, match="no trained weights"):
            export_model("ffdnet-gray", tmp_path / "m.pt", format="torchscript")
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ the command line

def run_cli(capsys, monkeypatch, *argv):
    """``denoise ARGV`` in-process, with ``export`` among the commands."""
    cli_main = importlib.import_module("denoise.cli.main")
    export = importlib.import_module("denoise.cli.export")
    if export not in cli_main.COMMANDS:
        monkeypatch.setattr(cli_main, "COMMANDS", (*cli_main.COMMANDS, export))
    code = cli_main.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_export(tmp_path, capsys, monkeypatch):
    onnx_ready()
    path = tmp_path / "ffdnet.onnx"
    code, out, err = run_cli(capsys, monkeypatch, "export", "--model", "ffdnet", "--channels", "1",
                             "--format", "onnx", "-o", path)
    assert code == 0, err
    assert f"wrote {path}" in out and "sigma" in out and "dynamic axes: N, H, W" in out
    assert "denoise: warning:" in err and "random" in err
    session = ort_session(path)
    assert [i.name for i in session.get_inputs()] == ["image", "sigma"]

    # an existing file without --force, then with it
    code, out, err = run_cli(capsys, monkeypatch, "export", "-m", "ffdnet", "--channels", "1", "-o", path)
    assert code == 2 and err.startswith("denoise: error:") and "--force" in err
    code, out, err = run_cli(capsys, monkeypatch, "export", "-m", "ffdnet", "--channels", "1", "-o", path,
                             "--force")
    assert code == 0, err


def test_cli_refuses_classical_in_one_line(tmp_path, capsys, monkeypatch):
    code, out, err = run_cli(capsys, monkeypatch, "export", "-m", "dct", "--format", "onnx",
                             "-o", tmp_path / "dct.onnx")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("denoise: error: model 'dct' is not a network")
    assert not list(tmp_path.iterdir())


def test_cli_format_from_the_file_name(tmp_path, capsys, monkeypatch):
    code, out, err = run_cli(capsys, monkeypatch, "export", "-m", "ee559-project1", "-o", tmp_path / "m.pt")
    assert code == 0 and "TorchScript" in out, err
    code, out, err = run_cli(capsys, monkeypatch, "export", "-m", "ee559-project1", "-o", tmp_path / "m.bin")
    assert code == 2 and "--format" in err


def test_register_adds_the_subcommand():
    from denoise.cli import export

    parser = argparse.ArgumentParser()
    export.register(parser.add_subparsers())
    args = parser.parse_args(["export", "-m", "n2n-unet-gray", "-o", "x.onnx", "--channels", "1"])
    assert args.model == "n2n-unet-gray" and args.channels == 1 and not args.force


@pytest.mark.parametrize("name", ["dct-learned", "ee559-project2"])
def test_learned_models_that_are_not_torch_networks_are_refused(tmp_path, name):
    from denoise.deploy import export_model, exportable_models

    with pytest.raises(InputError, match="not a network these formats hold"):
        export_model(name, tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir()) and name not in exportable_models()[0]
