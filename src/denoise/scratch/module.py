"""Module, Parameter and Sequential: the skeleton of the scratch framework.

The contract (chosen once for every module):

* ``y = module.forward(x)`` (or ``module(x)``) computes the output and keeps what the
  backward pass needs;
* ``grad_x = module.backward(grad_y)`` takes the gradient of the loss with respect to
  the output, *adds* the gradients of the module's parameters to their ``.grad``
  tensors and returns the gradient with respect to the input. It releases the saved
  context, so each ``forward`` supports one ``backward`` (as PyTorch frees its graph).

No autograd is involved: the framework only creates tensors that do not require
gradients and is meant to run under ``torch.set_grad_enabled(False)``.

Parameters are registered automatically when assigned as attributes, so
``parameters()`` and ``state_dict()`` never forget one, and the state-dict keys are those
of the ``torch.nn`` twin (``"0.weight"``, ``"4.1.bias"``, ...), which makes the two
interchangeable in both directions.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Iterator, Mapping

import torch

from .errors import ScratchError

Tensor = torch.Tensor


class Parameter:
    """A trainable tensor (``data``) and the gradient accumulated for it (``grad``).

    As with a ``torch.nn.Parameter``, torch functions accept one in place of its value:
    through PyTorch's ``__torch_function__`` protocol they receive ``data`` instead
    (``F.conv2d(x, conv.weight, conv.bias)``, ``torch.allclose(conv.weight, w)``), which
    the EE-559 course's checks rely on.
    """

    __slots__ = ("data", "grad")

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return func(*_values(tuple(args)), **{k: _values(v) for k, v in (kwargs or {}).items()})

    def __init__(self, data: Tensor, grad: Tensor | None = None) -> None:
        if not isinstance(data, Tensor) or not data.is_floating_point():
            raise ScratchError(f"a Parameter needs a float tensor, got {_describe(data)}")
        if grad is not None and (not isinstance(grad, Tensor) or grad.shape != data.shape):
            raise ScratchError(f"a Parameter's grad must be a tensor of shape {tuple(data.shape)}, "
                               f"got {_describe(grad)}")
        self.data = data
        self.grad = torch.zeros_like(data) if grad is None else grad

    @property
    def shape(self) -> torch.Size:
        return self.data.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.data.dtype

    def zero_grad(self) -> None:
        """Set the accumulated gradient to zero (in place)."""
        self.grad.zero_()

    def __repr__(self) -> str:
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype})"


def _values(value):
    """``value`` with each :class:`Parameter` in it (also in lists, tuples) replaced by its data."""
    if isinstance(value, Parameter):
        return value.data
    if isinstance(value, (list, tuple)):
        return type(value)(_values(v) for v in value)
    return value


def _describe(value) -> str:
    """Short description of a value for error messages."""
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


class Module:
    """Base class: automatic registration of parameters and sub-modules, state dicts.

    Subclasses implement :meth:`forward` and :meth:`backward` (see the module docstring
    for the contract). ``forward`` keeps what backward needs with :meth:`_save`;
    ``backward`` reads it with :meth:`_peek_saved`, checks the gradient, then calls
    :meth:`_release_saved` (so a rejected gradient leaves the context usable).
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_saved", None)

    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"call Module.__init__() in {type(self).__name__}.__init__ "
                                 "before assigning attributes")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    # -- the contract -------------------------------------------------------------------
    def forward(self, *inputs: Tensor) -> Tensor:
        """Compute the output and save what :meth:`backward` needs."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, *grad_outputs: Tensor) -> Tensor:
        """Accumulate parameter gradients and return the gradient of the input."""
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *inputs: Tensor) -> Tensor:
        return self.forward(*inputs)

    def _save(self, *values) -> None:
        """Keep ``values`` for the next :meth:`backward` (replacing earlier ones)."""
        object.__setattr__(self, "_saved", values)

    def _peek_saved(self) -> tuple:
        """What :meth:`forward` saved (kept until :meth:`_release_saved`); an error if nothing."""
        saved = self._saved
        if saved is None:
            raise ScratchError(f"{type(self).__name__}.backward called before forward; "
                               "call forward (once per backward) first")
        return saved

    def _release_saved(self) -> None:
        """Drop the saved context once the output gradient has been checked."""
        object.__setattr__(self, "_saved", None)

    # -- parameters and children --------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        """Direct sub-modules with their attribute names, in registration order."""
        yield from self._modules.items()

    def children(self) -> Iterator["Module"]:
        for _, module in self.named_children():
            yield module

    def modules(self) -> Iterator["Module"]:
        """This module and all its descendants, depth first."""
        yield self
        for child in self.children():
            yield from child.modules()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Parameters with their dotted names (the state-dict keys), each once."""
        seen: set[int] = set()
        for name, param in self._named_parameters(prefix):
            if id(param) not in seen:
                seen.add(id(param))
                yield name, param

    def _named_parameters(self, prefix: str) -> Iterator[tuple[str, Parameter]]:
        for name, param in self._parameters.items():
            yield prefix + name, param
        for name, child in self._modules.items():
            yield from child._named_parameters(f"{prefix}{name}.")

    def parameters(self) -> list[Parameter]:
        """All parameters of this module and its descendants."""
        return [param for _, param in self.named_parameters()]

    def param(self) -> list[tuple[Tensor, Tensor]]:
        """The course API: a list of ``(value, gradient)`` pairs, one per parameter."""
        return [(param.data, param.grad) for param in self.parameters()]

    def zero_grad(self) -> None:
        """Set every parameter gradient to zero."""
        for param in self.parameters():
            param.zero_grad()

    # -- state dicts ----------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, Tensor]":
        """Parameter tensors by dotted name, the same keys as the ``torch.nn`` twin's."""
        return OrderedDict((name, param.data) for name, param in self.named_parameters())

    def load_state_dict(self, state_dict: Mapping[str, Tensor], strict: bool = True) -> None:
        """Copy values into the parameters; keys and shapes must match exactly.

        With ``strict=False`` missing and unexpected keys are ignored, shapes still checked.
        Values are converted to each parameter's dtype and device, as ``torch.nn`` does.
        """
        if not isinstance(state_dict, Mapping):
            raise ScratchError(f"load_state_dict needs a mapping of names to tensors, "
                               f"got {type(state_dict).__name__}")
        own = dict(self.named_parameters())
        if strict:
            missing = [key for key in own if key not in state_dict]
            unexpected = [key for key in state_dict if key not in own]
            if missing or unexpected:
                raise ScratchError(f"state_dict keys do not match {type(self).__name__}: "
                                   f"missing {missing}, unexpected {unexpected}; pass the "
                                   "state_dict of the same architecture")
        for key, param in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            if not isinstance(value, Tensor) or value.shape != param.shape:
                raise ScratchError(f"state_dict[{key!r}] must be a tensor of shape "
                                   f"{tuple(param.shape)}, got {_describe(value)}")
        for key, param in own.items():
            if key in state_dict:
                param.data.copy_(state_dict[key])

    # -- dtype and device -----------------------------------------------------------------
    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None):
        """Move every parameter (and its gradient) to ``dtype`` / ``device``; returns self."""
        if dtype is not None and not dtype.is_floating_point:
            raise ScratchError(f"parameters must stay floating point, got dtype {dtype}")
        for param in self.parameters():
            param.data = param.data.to(dtype=dtype, device=device)
            param.grad = param.grad.to(dtype=dtype, device=device)
        return self

    def double(self):
        """Convert parameters to float64 (for exact comparisons); returns self."""
        return self.to(torch.float64)

    def float(self):
        """Convert parameters to float32; returns self."""
        return self.to(torch.float32)

    # -- printing -------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The arguments shown between the parentheses of ``repr``."""
        return ""

    def __repr__(self) -> str:
        children = [f"  ({name}): " + repr(child).replace("\n", "\n  ")
                    for name, child in self.named_children()]
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        return f"{type(self).__name__}(\n" + "\n".join(children) + "\n)"


class Sequential(Module):
    """Modules applied in order; ``backward`` runs them in reverse.

    Children are named ``"0"``, ``"1"``, ... like ``torch.nn.Sequential``, so the
    state-dict keys of both match.
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise ScratchError(f"Sequential takes scratch modules, got {type(module).__name__} "
                                   f"at position {index}")
            setattr(self, str(index), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def forward(self, x: Tensor) -> Tensor:
        for module in self:
            x = module(x)
        return x

    def backward(self, grad: Tensor) -> Tensor:
        for module in reversed(list(self)):
            grad = module.backward(grad)
        return grad


def as_parameters(params: Iterable) -> list[Parameter]:
    """Parameters from ``model.parameters()`` or from the course's ``(value, grad)`` pairs."""
    result = []
    for item in params:
        if isinstance(item, Parameter):
            result.append(item)
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            result.append(Parameter(item[0], item[1]))
        else:
            raise ScratchError("optimizers take model.parameters() (or model.param() pairs), "
                               f"got an item of type {type(item).__name__}")
    if not result:
        raise ScratchError("the optimizer got no parameters; pass model.parameters()")
    return result
