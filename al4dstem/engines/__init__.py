"""Inference engines: stream a whole scan through a model into a probability map.

An engine is one function, ``predict(model, dataset, *, batch_size, progress, **options) ->
(probs, valid)`` (``al4dstem.base.Engine``), chosen by name as samplers are:

- ``local``: this machine, threads, bounded memory (``al4dstem.engines.local``);
- ``libertem``: a LiberTEM UDF, inline or on a Dask cluster (``al4dstem.integrations.libertem``,
  extra ``scale``; imported only when chosen);
- ``package.module:function``, or a name in the ``al4dstem.engines`` entry-point group.

``predict_dataset`` is the local engine, kept here for callers that import it from this package.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from importlib.metadata import entry_points

from al4dstem.engines.local import predict_dataset  # the local engine: light (torch is imported when it runs)
from al4dstem.errors import Al4dstemError

ENTRY_POINT_GROUP = "al4dstem.engines"

# name -> "module:function", imported on first use (LiberTEM and Dask are heavy and optional)
ENGINES: dict[str, str] = {
    "local": "al4dstem.engines.local:predict_dataset",
    "libertem": "al4dstem.integrations.libertem:predict_dataset",
}
COMMON = ("batch_size", "progress")  # every engine takes these


def known_engines() -> list[str]:
    return list(ENGINES) + sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} - set(ENGINES))


def get_engine(spec: str) -> Callable:
    """The engine function named by ``spec``: a built-in name, an entry-point name or ``module:function``."""
    spec = str(spec).strip()
    target = ENGINES.get(spec)
    if target is None and ":" not in spec:
        found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}.get(spec)
        if found is None:
            raise Al4dstemError(f"unknown engine {spec!r}: known engines are {', '.join(known_engines())}, "
                                "or give your own as package.module:function")
        target = found.value
    module_name, _, name = (target or spec).partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        if spec == "libertem":
            raise Al4dstemError(f"the libertem engine needs LiberTEM: pip install 'al4dstem[scale]' ({e})") from None
        raise Al4dstemError(f"engine {spec!r}: cannot import {module_name} ({e})") from None
    engine = getattr(module, name, None)
    if not callable(engine):
        raise Al4dstemError(f"engine {spec!r}: {module_name} has no function {name!r}")
    return engine


def run_engine(spec: str, model, dataset, **options):
    """``get_engine(spec)(model, dataset, **options)``; options given as None are left out, and an
    option the engine does not take is one error line naming what it takes."""
    engine = get_engine(spec)
    options = {k: v for k, v in options.items() if v is not None}
    accepted = _parameters(engine)
    if accepted is not None:
        unexpected = [k for k in options if k not in accepted]
        if unexpected:
            names = ", ".join("--" + k.replace("_", "-") for k in unexpected)
            takes = ", ".join("--" + k.replace("_", "-") for k in sorted(accepted - set(COMMON))) or "nothing more"
            raise Al4dstemError(f"the {spec} engine does not take {names} (it takes {takes})")
    return engine(model, dataset, **options)


def _parameters(function) -> set[str] | None:
    """Keyword parameters of ``function``; None when it takes ``**kwargs`` (anything goes)."""
    params = inspect.signature(function).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)} - {"model", "dataset"}


__all__ = ["ENGINES", "get_engine", "known_engines", "predict_dataset", "run_engine"]
