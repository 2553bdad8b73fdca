"""What a training config describes: its data source and its (untrained) model."""
from __future__ import annotations

import copy

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


def build_model(config: TrainConfig, channels: int, data=None) -> nn.Module:
    """Create the registered model for ``channels``-channel data: untrained, or with the
    weights of ``config.init`` (:func:`init_weights`; with ``config.init_deepen``,
    :func:`deepen_chain` calibrated on one batch of ``data``)."""
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
    if config.init is not None and config.init_deepen:
        if data is None:
            raise InputError("--init-deepen needs the training data (one batch calibrates the new layers)")
        batch = data.sample(min(config.batch_size, 32), torch.Generator().manual_seed(config.seed + 1))
        deepen_chain(model, _load_init(config.init), batch.input,
                     None if batch.sigma is None else batch.sigma, what=config.model, source=config.init)
    elif config.init is not None:
        init_weights(model, config.init, what=config.model, widen=config.init_widen)
    return model.train()


def _load_init(source: str) -> nn.Module:
    from ..models.registry import create_model
    from ..models.user import looks_like_path, model_from_path

    return model_from_path(source)[1] if looks_like_path(source) else create_model(source)


def _chain_blocks(body: nn.Sequential) -> tuple[int, int]:
    """(head, blocks) of a DnCNN/FFDNet chain: ``head`` leading modules (conv, ReLU), then
    ``blocks`` x (conv, BN, ReLU), then the output conv; ValueError for anything else."""
    mods = list(body)
    if len(mods) < 3 or not isinstance(mods[0], nn.Conv2d) or not isinstance(mods[1], nn.ReLU) \
            or not isinstance(mods[-1], nn.Conv2d) or (len(mods) - 3) % 3:
        raise ValueError("not a conv+ReLU, (conv+BN+ReLU)..., conv chain")
    for i in range(2, len(mods) - 1, 3):
        conv, bn, relu = mods[i:i + 3]
        if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and isinstance(relu, nn.ReLU)):
            raise ValueError("not a conv+ReLU, (conv+BN+ReLU)..., conv chain")
    return 2, (len(mods) - 3) // 3


@torch.no_grad()
def deepen_chain(model: nn.Module, trained: nn.Module, inputs: torch.Tensor, sigma=None, *,
                 what: str = "the model", source: str = "the init") -> nn.Module:
    """Load into ``model`` (a deeper conv+BN+ReLU chain in ``.body``: FFDNet, DnCNN) the
    weights of ``trained`` (the same architecture with fewer layers), new layers inserted
    as identities, evenly spaced between the old middle layers.

    A new layer is a 3x3 convolution and batch norm followed by ReLU. Its convolution is a
    Dirac kernel (output channel c copies input channel c) and its batch norm's scale and
    shift are the standard deviation and mean, per channel, of the activation it receives,
    measured on ``inputs`` (a training batch) with ``trained`` in training mode; they are
    also its running statistics. In inference the new layer therefore maps its input
    exactly to itself (the input is non-negative, after a ReLU, so the ReLU keeps it); in
    training, where batch norm uses the batch's own statistics, it does so up to the
    difference between a batch's statistics and the calibration batch's. So the deeper
    model starts from the trained function, and every layer trains from the first step.
    ModelError when the two models are not such chains of one width."""
    try:
        if type(model) is not type(trained):
            raise ValueError(f"{type(trained).__name__} weights for a {type(model).__name__}")
        head, old_n = _chain_blocks(trained.body)
        _, new_n = _chain_blocks(model.body)
        if new_n <= old_n:
            raise ValueError(f"the new model has {new_n + 2} layers, not more than the init's {old_n + 2}")
        if old_n < 1:
            raise ValueError("the init has no middle layer to calibrate from")
        if model.body[0].out_channels != trained.body[0].out_channels \
                or model.body[0].in_channels != trained.body[0].in_channels:
            raise ValueError("the widths differ (deepen only; widen in another run)")
    except ValueError as exc:
        raise ModelError(f"--init-deepen cannot put {source} into {what}: {exc}") from None
    extra = new_n - old_n
    # insert after old middle block number after[j] (1-based), evenly spaced
    after = sorted(round((j + 1) * old_n / (extra + 1)) for j in range(extra))
    after = [min(max(a, 1), old_n) for a in after]
    # the activation after each old middle block, on the calibration batch, in training mode
    stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def recorder(k: int):
        def hook(_module, _inputs, out):
            a = out.detach().double()
            stats[k] = (a.mean(dim=(0, 2, 3)), a.var(dim=(0, 2, 3), unbiased=False))
        return hook

    probe = copy.deepcopy(trained).train()  # training-mode statistics; the original's running ones stay
    hooks = [probe.body[head + 3 * k - 1].register_forward_hook(recorder(k)) for k in set(after)]
    try:
        if sigma is not None and getattr(probe, "uses_sigma", False):
            probe(inputs, sigma)
        else:
            probe(inputs)
    finally:
        for h in hooks:
            h.remove()
    old_body, new_body = list(trained.body), list(model.body)
    order: list[nn.Module | tuple[torch.Tensor, torch.Tensor]] = list(old_body[:head])
    for k in range(1, old_n + 1):
        order += old_body[head + 3 * (k - 1):head + 3 * k]
        order += [stats[k]] * after.count(k) if k in stats else []
    order.append(old_body[-1])
    i = 0
    for item in order:
        if isinstance(item, tuple):  # a new identity block: conv, BN, ReLU
            conv, bn = new_body[i], new_body[i + 1]
            nn.init.dirac_(conv.weight)
            if conv.bias is not None:
                conv.bias.zero_()
            mean, var = item
            bn.weight.copy_((var + bn.eps).sqrt().float())
            bn.bias.copy_(mean.float())
            bn.running_mean.copy_(mean.float())
            bn.running_var.copy_(var.float())
            bn.num_batches_tracked.zero_()
            i += 3
        else:
            new_body[i].load_state_dict(item.state_dict())
            i += 1
    assert i == len(new_body)
    for name, module in model.named_children():  # anything beside the body (none in FFDNet/DnCNN)
        if name != "body" and any(True for _ in module.parameters()):
            module.load_state_dict(getattr(trained, name).state_dict())
    return model


def init_weights(model: nn.Module, source: str, *, what: str = "the model", widen: bool = False) -> nn.Module:
    """Load into ``model`` the weights of ``source``: a registered or user model name with
    weights, or a path (a .safetensors file with its card, a run folder, a checkpoint).
    With ``widen`` the weights may be narrower than ``model``'s (:func:`widen_state`).
    ModelError when they cannot be read or do not fit."""
    if widen:
        odd = sorted({type(m).__name__ for m in model.modules()
                      if isinstance(m, nn.modules.conv._ConvTransposeNd) or getattr(m, "groups", 1) != 1})
        if odd:
            raise ModelError(f"--init-widen handles convolution and linear layers whose weights are (out, in, ...); "
                             f"{what} has {', '.join(odd)}")
    state = _load_init(source).state_dict()
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
