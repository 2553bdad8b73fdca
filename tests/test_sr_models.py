"""Super-resolution models (ESPCN, compact RDN, bicubic), the upscale API and CLI."""
from __future__ import annotations

import argparse

import pytest
import torch

from denoise.degrade import imresize
from denoise.errors import InputError
from denoise.models.base import contract
from denoise.models.sr import ESPCN, Bicubic, CompactRDN
from denoise.tiling import tiled
from denoise.upscale import check_scale, models_for, upscale

pytestmark = pytest.mark.usefixtures("one_thread")


def _params(m):
    return sum(p.numel() for p in m.parameters())


def _small_rdn(scale):
    return CompactRDN(scale=scale, blocks=2, layers=2, growth=8, features=8).eval()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shapes_odd_sizes(scale, generator):
    x1 = torch.rand(2, 1, 13, 17, generator=generator)
    x3 = torch.rand(1, 3, 11, 9, generator=generator)
    with torch.no_grad():
        assert ESPCN(1, scale).eval()(x1).shape == (2, 1, 13 * scale, 17 * scale)
        assert ESPCN(3, scale).eval()(x3).shape == (1, 3, 11 * scale, 9 * scale)
        assert CompactRDN(3, scale).eval()(x3).shape == (1, 3, 11 * scale, 9 * scale)
        assert Bicubic(scale)(x3).shape == (1, 3, 11 * scale, 9 * scale)


def test_parameter_counts_and_contract():
    assert _params(ESPCN(1, 2)) == 21284
    assert _params(ESPCN(3, 3)) == 31131
    counts = {s: _params(CompactRDN(3, s)) for s in (2, 3, 4)}
    assert counts == {2: 1098755, 3: 1283395, 4: 1246467}
    assert all(0.5e6 <= n <= 1.5e6 for n in counts.values())
    for s in (2, 3, 4):
        for m, rf in ((ESPCN(1, s), 4), (CompactRDN(3, s), 29), (Bicubic(s), 2)):
            c = contract(m)
            assert (c.scale, c.receptive_field, c.uses_sigma, c.alignment) == (s, rf, False, 1)
    assert not Bicubic.exportable and ESPCN.exportable
    for bad in ({"scale": 5}, {"scale": 2.0}, {"channels": 2}):
        with pytest.raises(ValueError):
            ESPCN(**bad)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("make", [lambda s: ESPCN(3, s, features=(8, 8)).eval(), _small_rdn, Bicubic],
                         ids=["espcn", "rdn", "bicubic"])
def test_tiling_exact(make, scale, generator):
    torch.manual_seed(0)
    model = make(scale)
    # PyTorch's default init: random non-zero weights and biases
    assert all((p != 0).all() for p in model.parameters())
    x = torch.rand(1, 3, 47, 52, generator=generator)
    rf = model.receptive_field
    with torch.no_grad():
        full = model(x)
        out = tiled(model, x, tile=12)  # overlap, scale and alignment from the contract
    assert out.shape == full.shape
    assert (out - full).abs().max() < 1e-5
    if not isinstance(model, Bicubic):  # the bound is tight: the gradient reaches rf pixels
        x = x.clone().requires_grad_(True)
        reach = 0
        for sub in (0, scale - 1):  # first and last sub-pixel: the field's two extremes
            x.grad = None
            p = (24 * scale + sub, 26 * scale + sub)
            with torch.enable_grad():
                model(x)[0, :, p[0], p[1]].sum().backward()
            rows, cols = torch.nonzero(x.grad.abs().sum((0, 1)), as_tuple=True)
            reach = max(reach, int((rows - 24).abs().max()), int((cols - 26).abs().max()))
        assert reach == rf


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_is_imresize(scale, generator):
    x = torch.rand(1, 3, 20, 15, generator=generator)
    assert torch.equal(Bicubic(scale)(x), imresize(x, scale))
    y = upscale(x, scale)  # default model: bicubic, clamped to [0, 1]
    assert torch.allclose(y, imresize(x, scale).clamp(0, 1), atol=1e-6)


def test_upscale_errors(generator):
    x = torch.rand(1, 3, 20, 20, generator=generator)
    with pytest.raises(InputError, match="not supported; use 2, 3, 4"):
        upscale(x, 5)
    with pytest.raises(InputError, match="integer"):
        upscale(x, 2.5)
    with pytest.raises(InputError, match="integer"):
        check_scale("2")
    assert check_scale(3.0) == 3
    with pytest.raises(InputError, match=r"upscales by 2, not 3; models for x3: .*bicubic"):
        upscale(x, 3, ESPCN(3, 2))
    with pytest.raises(InputError, match=r"'espcn' upscales by 2, not 4"):
        upscale(x, 4, "espcn")
    with pytest.raises(InputError, match=r"'dct' upscales by 1 \(a denoiser\), not 2"):
        upscale(x, 2, "dct")
    with pytest.raises(InputError, match="receptive field"):
        upscale(torch.rand(1, 3, 20, 3), 2, CompactRDN(3, 2))
    with pytest.raises(InputError, match="3-channel"):
        upscale(torch.rand(1, 1, 20, 20), 2, ESPCN(3, 2))
    assert "bicubic" in models_for(2)


def test_upscale_module_matches_forward(generator):
    m = ESPCN(1, 3).eval()
    x = torch.rand(1, 1, 30, 40, generator=generator)
    with torch.no_grad():
        ref = m(x).clamp(0, 1)
    assert torch.allclose(upscale(x, 3, m, tile=16), ref, atol=1e-5)


def _parser():
    from denoise.cli import upscale as cli

    parser = argparse.ArgumentParser(prog="denoise")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def _run(argv, monkeypatch):
    import importlib

    from denoise.cli import upscale as cli

    main = importlib.import_module("denoise.cli.main")

    monkeypatch.setattr(main, "COMMANDS", (cli,))
    return main.main(argv)


def test_cli_upscale_16bit(tmp_path, monkeypatch, generator):
    from denoise.io import read_image, write_image

    src = tmp_path / "in"
    src.mkdir()
    x = torch.rand(1, 3, 10, 13, generator=generator)
    write_image(src / "a.png", x, bit_depth=16)
    out = tmp_path / "out"
    assert _run(["upscale", str(src), "-o", str(out), "--mkdir", "--scale", "2", "-q"], monkeypatch) == 0
    y, info = read_image(out / "a.png")
    assert info.bit_depth == 16 and y.shape == (1, 3, 20, 26)
    xin, _ = read_image(src / "a.png")
    assert (y - imresize(xin, 2).clamp(0, 1)).abs().max() < 1 / 65535 + 1e-6
    # never overwrites without --force
    assert _run(["upscale", str(src), "-o", str(out), "--scale", "2", "-q"], monkeypatch) == 2
    assert _run(["upscale", str(src), "-o", str(out), "--scale", "2", "-q", "-f"], monkeypatch) == 0


@pytest.mark.parametrize("argv", [
    ["--scale", "5"], ["--scale", "2.5"], ["--scale", "3", "--model", "espcn"],
    ["--scale", "2", "--model", "nosuchmodel"]])
def test_cli_errors_write_nothing(tmp_path, monkeypatch, capsys, argv, generator):
    from denoise.io import write_image

    write_image(tmp_path / "a.png", torch.rand(1, 1, 8, 8, generator=generator))
    out = tmp_path / "out"
    assert _run(["upscale", str(tmp_path / "a.png"), "-o", str(out), "--mkdir", *argv], monkeypatch) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and "Traceback" not in "\n".join(err)
    assert not out.exists()


def test_cli_parser_and_small_image(tmp_path, monkeypatch, capsys, generator):
    from denoise.io import write_image

    args = _parser().parse_args(["upscale", "x.png", "-o", "o", "--scale", "4"])
    assert (args.scale, args.model, args.force) == (4, "bicubic", False)
    write_image(tmp_path / "tiny.png", torch.rand(1, 3, 1, 5, generator=generator))
    out = tmp_path / "out"
    out.mkdir()
    # too small for any model: the file fails (one line), nothing written
    assert _run(["upscale", str(tmp_path / "tiny.png"), "-o", str(out), "--scale", "2", "-q"],
                monkeypatch) == 1
    err = capsys.readouterr().err
    assert "too small" in err and "Traceback" not in err
    assert list(out.iterdir()) == []
