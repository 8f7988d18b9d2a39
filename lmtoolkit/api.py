"""The Python API of the contract: :func:`simulate` one migration (sweeps: :func:`lmtoolkit.sweep`,
evacuations: :func:`lmtoolkit.evacuate`)."""

from __future__ import annotations

from collections.abc import Iterable

import xarray as xr
from omegaconf import DictConfig, OmegaConf

from . import dataset, provenance
from .compose import as_overrides, compose, split_override, task_of
from .engine import run_batch
from .errors import ConfigError
from .runner import build_power, build_scenario


def simulate(
    overrides: Iterable[str] | str | None = (), command: str | None = None, cfg: DictConfig | None = None
) -> xr.Dataset:
    """Simulate one migration described by Hydra ``overrides``; return an ``xarray.Dataset``.

    ``overrides``: a list of ``key=value`` strings (or one string of them, space-separated);
    ``cfg``: an already composed config instead (no composition).  Scalars ``total_time``
    (s), ``downtime`` (s), ``transferred`` (bytes), ``rounds``, ``converged`` and more;
    per-round variables on dim ``round``.  Raises :class:`~lmtoolkit.errors.ConfigError`
    naming the key for bad input.
    """
    overrides = as_overrides(overrides)
    if cfg is None:
        cfg = compose(overrides)
    check_single_migration(cfg, overrides)
    scn = build_scenario(cfg)
    from .model.energy import scenario_constants
    from .tasks.migration import with_energy

    batch = with_energy(run_batch([scn]), scenario_constants(scn, build_power(cfg)))
    attrs = provenance.attrs(cfg, overrides, command or f"lmtoolkit.simulate({overrides!r})")
    attrs["title"] = str(cfg.get("title", "single live migration"))
    return dataset.to_dataset(batch, attrs=attrs)


def check_single_migration(cfg: DictConfig, overrides: Iterable[str] | str | None = ()) -> None:
    """A config that declares a sweep or another task, or ``overrides`` that set what only
    sweeps read (:func:`check_run_overrides`), are an error here, not a silent substitute:
    the one check of :func:`simulate` and ``lmtk run``."""
    task = task_of(cfg)
    if task != "migration":
        raise ConfigError(
            "task",
            task,
            "",
            message=f"task={task}: simulate / lmtk run simulate one "
            f"migration; run it with lmtk sweep (or lmtk evacuate)",
        )
    axes = OmegaConf.select(cfg, "sweep.axes")
    if axes:
        raise ConfigError(
            "sweep.axes",
            list(axes.keys()),
            "",
            message=(
                f"the config declares sweep axes ({', '.join(map(str, axes.keys()))}): simulate / lmtk "
                f"run simulate one migration; run the experiment with lmtk sweep"
            ),
        )
    check_run_overrides(overrides)


def check_run_overrides(overrides) -> None:
    """``lmtk run`` and :func:`simulate` read no ``sweep`` setting (one migration: no axes,
    replicates, executor, chunks, cache or output format of its own): a ``sweep.*`` override
    or a ``sweep`` option is refused, not dropped (``lmtk run sweep.replicates=5`` ran one
    migration, exit 0; ``lmt.simulate(["sweep.replicates=5"])`` still did).  Evacuation keys
    are refused by the composition itself (:func:`lmtoolkit.compose.compose_both`).  A
    notebook that hands its overrides to ``cfg.simulate()`` gets the same error."""
    for o in as_overrides(overrides):
        _, key, value = split_override(o)
        if key == "sweep" or key.startswith("sweep."):
            raise ConfigError(
                key,
                value,
                "",
                message=f"{o}: sweep keys are settings of lmtk sweep (axes, replicates, executor, chunks, "
                f"cache, format); lmtk run and lmt.simulate run one migration and read none of them "
                f"(lmtk sweep experiment=NAME {o.lstrip('+~')}, or lmt.sweep)",
            )
