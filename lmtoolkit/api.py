"""The Python API of DESIGN.md's contract: :func:`simulate` (and, later, :func:`sweep`)."""
from __future__ import annotations

from typing import Iterable

import xarray as xr

from . import dataset, provenance
from .engine import run_batch
from .runner import build_scenario, compose


def simulate(overrides: Iterable[str] = (), command: str | None = None) -> xr.Dataset:
    """Simulate one migration described by Hydra ``overrides``; return an ``xarray.Dataset``.

    Scalars ``total_time`` (s), ``downtime`` (s), ``transferred`` (bytes), ``rounds``,
    ``converged`` and more; per-round variables on dim ``round``.  Raises
    :class:`~lmtoolkit.errors.ConfigError` naming the key for bad input.
    """
    overrides = list(overrides)
    cfg = compose(overrides)
    scn = build_scenario(cfg)
    batch = run_batch([scn])
    attrs = provenance.attrs(cfg, overrides, command or f"lmtoolkit.simulate({overrides!r})")
    attrs["title"] = str(cfg.get("title", "single live migration"))
    return dataset.to_dataset(batch, attrs=attrs)
