"""Sampler names: the built-ins, ``package.module:ClassName``, and the ``al4dstem.samplers`` entry points.

A third-party package registers a sampler in its ``pyproject.toml``::

    [project.entry-points."al4dstem.samplers"]
    farthest = "mypkg.samplers:FarthestPointSampler"
"""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points

from al4dstem.base import Sampler
from al4dstem.errors import Al4dstemError
from al4dstem.strategies.grid_midpoint import GridMidpointSampler
from al4dstem.strategies.hybrid import HybridSampler
from al4dstem.strategies.random import RandomSampler
from al4dstem.strategies.uncertainty import UncertaintySampler

ENTRY_POINT_GROUP = "al4dstem.samplers"

SAMPLERS: dict[str, type] = {
    "random": RandomSampler,
    "grid-midpoint": GridMidpointSampler,
    "uncertainty": UncertaintySampler,
    "hybrid": HybridSampler,
}


def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_samplers() -> list[str]:
    """Built-in names, then installed entry-point names."""
    return list(SAMPLERS) + sorted(set(_entry_points()) - set(SAMPLERS))


def sampler_class(spec: str) -> type:
    """The class named by ``spec``: a built-in name, an entry-point name or ``package.module:ClassName``."""
    spec = str(spec).strip()
    if spec in SAMPLERS:
        return SAMPLERS[spec]
    if ":" in spec:
        cls = _import_class(spec)
    else:
        ep = _entry_points().get(spec)
        if ep is None:
            raise Al4dstemError(
                f"unknown sampler {spec!r}: known samplers are {', '.join(known_samplers())}, "
                "or give your own as package.module:ClassName"
            )
        try:
            cls = ep.load()
        except Exception as e:
            raise Al4dstemError(f"sampler {spec!r} (entry point {ep.value}) failed to load: {e}") from None
        spec = f"{spec} ({ep.value})"
    _check_contract(cls, spec)
    return cls


def get_sampler(spec: str, **params) -> Sampler:
    """A sampler instance from its name and hyper-parameters (``step=..., random_state=...``).

    Parameters the class does not take are an error, except ``random_state`` and parameters
    whose value is None: those are dropped, so a caller may pass ``random_state=seed, step=None``
    to any sampler.
    """
    cls = sampler_class(spec)
    accepted = _init_parameters(cls)
    if accepted is not None:
        unexpected = [k for k, v in params.items() if k not in accepted and v is not None and k != "random_state"]
        if unexpected:
            raise Al4dstemError(
                f"sampler {spec!r} does not take {', '.join(unexpected)} "
                f"(it takes: {', '.join(sorted(accepted)) or 'no parameters'})"
            )
        params = {k: v for k, v in params.items() if k in accepted}
    try:
        sampler = cls(**params)
    except (TypeError, ValueError) as e:
        raise Al4dstemError(f"sampler {spec!r}: bad parameters ({e})") from None
    except Exception as e:  # the sampler's own code failed: say so in one line, not a traceback
        raise Al4dstemError(f"sampler {spec!r} failed to start ({type(e).__name__}: {_first_line(e)})") from None
    if not hasattr(sampler, "needs_model"):  # duck-typed (README): a sampler that does not say needs no model
        try:
            sampler.needs_model = False
        except (AttributeError, TypeError):  # __slots__ or a frozen class: wrap it instead
            sampler = _DuckSampler(sampler)
    return sampler


class _DuckSampler:
    """A duck-typed sampler that cannot take a ``needs_model`` attribute, seen as needing no model."""

    needs_model = False

    def __init__(self, sampler):
        self._sampler = sampler

    def query(self, context, n):
        return self._sampler.query(context, n)

    def __getattr__(self, name):
        return getattr(self._sampler, name)

    def __repr__(self) -> str:
        return repr(self._sampler)


def _import_class(spec: str) -> type:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise Al4dstemError(f"sampler {spec!r}: expected package.module:ClassName")
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as e:  # IndentationError too; name the file and line the user must fix
        where = f"{e.filename}, line {e.lineno}" if e.filename else module_name
        raise Al4dstemError(f"sampler {spec!r}: syntax error in {where}: {e.msg}") from None
    except ImportError as e:
        raise Al4dstemError(f"sampler {spec!r}: cannot import {module_name} ({e})") from None
    except Exception as e:  # the module's own code failed while importing
        raise Al4dstemError(f"sampler {spec!r}: importing {module_name} failed ({type(e).__name__}: "
                            f"{_first_line(e)})") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise Al4dstemError(f"sampler {spec!r}: {module_name} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _check_contract(cls, spec: str) -> None:
    if not inspect.isclass(cls):
        raise Al4dstemError(f"sampler {spec!r} is not a class (got {type(cls).__name__})")
    if not (issubclass(cls, Sampler) or callable(getattr(cls, "query", None))):
        raise Al4dstemError(
            f"sampler {spec!r} is not a sampler: subclass al4dstem.base.Sampler or define "
            "query(context, n) -> indices"
        )
    if inspect.isabstract(cls):
        raise Al4dstemError(f"sampler {spec!r} is abstract: it must implement query(context, n)")


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _init_parameters(cls) -> set[str] | None:
    """Names ``cls(...)`` accepts as keywords; None when it takes ``**kwargs``."""
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {name for name, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
