"""What a training config describes: its data source and its (untrained) model."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError, ModelError
from .config import NO_NOISE, TrainConfig, default_val_noise


def folder_data(config: TrainConfig, images: list[torch.Tensor]):
    """The data=folder source of ``config`` on already loaded ``images`` (clean; noisy with
    ``noise="none"``), sorted by name as :func:`denoise.training.data.load_folder` returns
    them: the last ``val_count`` are held out. Several runs on one folder (a benchmark) load
    it once and share it."""
    from . import data as D

    n = D.split_holdout(len(images), config.val_count, f"images in {config.train_dir}")
    if config.noise in NO_NOISE:  # noisy photos, no clean version (target="self")
        from .selfsup import NoisyFolderData

        return NoisyFolderData(images[:n], crop=config.crop, val_images=images[n:], val_crop=config.val_crop)
    return D.CleanFolderData(images[:n], D.parse_noise(config.noise), target=config.target,
                             crop=config.crop, val_images=images[n:],
                             val_noise=D.parse_noise(default_val_noise(config)),
                             val_crop=config.val_crop, val_seed=config.seed + 12345, zoom=config.zoom)


def build_data(config: TrainConfig):
    """The training data source described by ``config`` (see :mod:`denoise.training.data`)."""
    from . import data as D

    if config.data == "folder":
        _, images = D.load_folder(config.train_dir, gray=config.gray)
        return folder_data(config, images)
    if config.data == "sr":
        from .sr_data import SRData

        _, images = D.load_folder(config.train_dir, gray=config.gray)
        n = D.split_holdout(len(images), config.val_count, f"images in {config.train_dir}")
        return SRData(images[:n], config.scale, patch=config.crop, val_images=images[n:],
                      val_crop=config.val_crop)
    if config.data == "pairs":
        paths = D.pair_paths(config.train_dir, config.target_dir, input_suffix=config.input_suffix,
                             target_suffix=config.target_suffix)
        pairs = D.load_pairs(paths, gray=config.gray)
        n = D.split_holdout(len(pairs), config.val_count, "pairs")
        val_pairs, clean = pairs[n:], config.val_clean is not None
        if clean:
            val_pairs = D.clean_references(config.val_clean, [a for a, _ in paths[n:]], val_pairs,
                                           channels=pairs[0][0].shape[0])
        return D.PairData(pairs[:n], crop=config.crop, swap=config.swap, val_pairs=val_pairs,
                          val_crop=config.val_crop, clean_reference=clean)
    a, b = D.load_pkl_pairs(config.pkl)
    n = D.split_holdout(a.shape[0], config.val_count, f"pairs in {config.pkl}")
    return D.PairData(list(zip(a[:n], b[:n])), crop=config.crop, swap=config.swap,
                      val_pairs=list(zip(a[n:], b[n:])), val_crop=config.val_crop)


def build_model(config: TrainConfig, channels: int) -> nn.Module:
    """Create the registered model for ``channels``-channel data: untrained, or with the
    weights of ``config.init`` (:func:`init_weights`)."""
    from ..models.registry import create_model, get_entry

    entry = get_entry(config.model)
    if entry.kind != "learned":
        raise InputError(f"model {config.model!r} is {entry.kind}, not trainable; pick a learned model")
    fixed = entry.defaults.get("channels")
    if fixed is not None and fixed != channels and "channels" not in config.model_kwargs:
        raise InputError(f"model {config.model!r} is for {fixed}-channel images but the data has "
                         f"{channels}; set gray={fixed == 1} or pick another model")
    if bool(config.scale) != (entry.scale > 1):
        raise InputError(f"model {config.model!r} is {'an upscaler' if entry.scale > 1 else 'a denoiser'}: "
                         + ("train it with --data sr --scale S" if entry.scale > 1 else "--data sr needs an "
                            "upscaler (espcn, rdn; see 'denoise models')"))
    kwargs = {"channels": channels, **({"scale": config.scale} if config.scale else {}), **config.model_kwargs}
    try:
        model = create_model(config.model, pretrained=False, **kwargs)
    except TypeError as exc:
        raise InputError(f"bad model_kwargs {config.model_kwargs} for {config.model!r}: {exc}") from None
    if not any(True for _ in model.parameters()):
        raise InputError(f"model {config.model!r} has no torch parameters to train here"
                         + ("; train it with 'denoise ee559 train 2'" if config.model.startswith("ee559") else ""))
    if config.init is not None:
        init_weights(model, config.init, what=config.model, widen=config.init_widen)
    return model.train()


def init_weights(model: nn.Module, source: str, *, what: str = "the model", widen: bool = False) -> nn.Module:
    """Load into ``model`` the weights of ``source``: a registered or user model name with
    weights, or a path (a .safetensors file with its card, a run folder, a checkpoint).
    With ``widen`` the weights may be narrower than ``model``'s (:func:`widen_state`).
    ModelError when they cannot be read or do not fit."""
    from ..models.registry import create_model
    from ..models.user import looks_like_path, model_from_path

    if widen:
        odd = sorted({type(m).__name__ for m in model.modules()
                      if isinstance(m, nn.modules.conv._ConvTransposeNd) or getattr(m, "groups", 1) != 1})
        if odd:
            raise ModelError(f"--init-widen handles convolution and linear layers whose weights are (out, in, ...); "
                             f"{what} has {', '.join(odd)}")
    trained = model_from_path(source)[1] if looks_like_path(source) else create_model(source)
    state = trained.state_dict()
    try:
        if widen:
            state = widen_state(state, model.state_dict())
        model.load_state_dict(state)
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"the weights of {source} do not fit {what}: {str(exc).splitlines()[0]}") from None
    return model


def widen_state(old: dict, new: dict) -> dict:
    """A state for the wider model whose (freshly initialised) state is ``new``, embedding the
    narrower ``old`` so that the wider model computes the same function (Net2Net-style
    widening, with zero instead of split outgoing weights).

    Every tensor of ``old`` must have the name, rank and layout of one in ``new``, and no
    dimension larger. Old entries are copied into the leading slice. In a weight of rank
    >= 2 (``(out, in, ...)``, a convolution or linear layer) the block from new input
    channels to old output channels is zeroed, so old channels never see new ones; new
    output channels keep their fresh incoming weights (from old and new channels) and the
    new rows of biases and normalisation parameters keep their fresh values. The output
    layer, whose size is unchanged, then reads old channels only: the function is kept,
    and the new channels start learning from the first step because their outgoing weights
    get gradients."""
    if set(old) != set(new):
        missing, extra = sorted(set(new) - set(old)), sorted(set(old) - set(new))
        raise ValueError(f"different layers (missing {missing[:3]}, unexpected {extra[:3]})")
    out = {}
    for name, fresh in new.items():
        src = old[name]
        if src.dim() != fresh.dim() or any(a > b for a, b in zip(src.shape, fresh.shape)):
            raise ValueError(f"{name}: {tuple(src.shape)} cannot be embedded in {tuple(fresh.shape)}")
        t = fresh.clone()
        if src.dim() == 0:
            t.copy_(src)
        else:
            if src.dim() >= 2:
                t[:src.shape[0], src.shape[1]:] = 0
            t[tuple(slice(0, k) for k in src.shape)] = src
        out[name] = t
    return out
