"""Host evacuation: every VM of one host migrates away, several at a time.

    import lmtoolkit as lmt
    ds = lmt.evacuate(["policy=vmware", "evacuation.order=smallest_first"])
    ds.end.max(), ds.makespan             # dim `vm`: start, end, duration, downtime, transferred
    ds.energy_total                       # J: the VMs' migrations + every host's idle power until the end

    lmtk evacuate policy=hyperv evacuation=gigabit
    lmtk evacuate experiment=evacuation_order      # the same Dataset as lmtk sweep experiment=...

An evacuation is a sweep task (:mod:`lmtoolkit.tasks.evacuation`): this module is its
command-line and API front, run by the one sweep machinery (cache, resume, executors,
Dataset assembly).  The scenario is the ``evacuation`` config group (``configs/evacuation/``,
:class:`~lmtoolkit.model.evacuation.Evacuation`): a ``source`` host and ``destinations`` with
their link rates and free memory, the VMs (``memory_gib``, ``dirty_rate_pages_s``,
``wss_mib``, ``count``; workload shape, policy, host from the rest of the config —
``workload=uniform`` unless given), an ``order`` and a ``concurrency`` limit per host (null =
the policy's, :meth:`~lmtoolkit.policies.base.Policy.concurrent_migrations`).  What the VMs
and the host links replace is refused, not dropped (``network.bandwidth_gbit_s``, a
``network`` or ``vm`` option, ``vm.memory_gib`` when every VM sets its own, …:
:func:`~lmtoolkit.runner.check_evacuation_overrides`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import xarray as xr

from .compose import as_overrides, compose_both, split_override, task_of
from .errors import ConfigError
from .io import DATASET_SUFFIXES, check_writable, write_dataset
from .sweep.plan import experiment_name
from .sweep.run import run

#: results of evacuations outside an experiment: <results>/evacuation/variants/<id>/
NAME = "evacuation"


def evacuation_overrides(overrides) -> list[str]:
    """The overrides of an evacuation: an experiment's as they are; otherwise with
    ``task=evacuation``, the ``evacuation`` group (``+evacuation=default`` unless chosen),
    ``workload=uniform`` unless a workload is chosen and ``engine=fluid`` (the engine an
    evacuation runs: :func:`~lmtoolkit.runner.build_evacuation`) unless one is given."""
    ov = as_overrides(overrides)
    if experiment_name(ov) is not None:
        return ov
    keys = {split_override(o)[1] for o in ov}
    out = ["task=evacuation"] if "task" not in keys else []
    if "engine" not in keys:
        out.append("engine=fluid")
    if "workload" not in keys:
        out.append("workload=uniform")
    ov = [("+" + o) if split_override(o)[:2] == ("", "evacuation") else o for o in ov]
    if "evacuation" not in keys:
        out.append("+evacuation=default")
    return out + ov


def evacuate(overrides: Iterable[str] | str = (), command: str | None = None) -> xr.Dataset:
    """Simulate a host evacuation described by Hydra ``overrides``; an ``xarray.Dataset``.

    With an experiment (``experiment=evacuation_order``): dims = its axes + ``replicate`` +
    ``vm``, the same Dataset as ``lmt.sweep``.  Without: one evacuation, dim ``vm``.
    """
    return run_evacuation(overrides, command)[0]


def run_evacuation(overrides, command: str | None = None, log=None):
    """(Dataset, sweep info) of :func:`evacuate`."""
    ov = evacuation_overrides(overrides)
    if experiment_name(ov) is None:  # (before composing: task=migration would refuse the group)
        for o in ov:
            _, key, value = split_override(o)
            if key == "task" and value != "evacuation":
                raise ConfigError("task", value, "evacuation (lmtk evacuate runs evacuations)")
    pair = compose_both(ov)
    if experiment_name(ov) is None and task_of(pair[1]) != "evacuation":
        raise ConfigError("task", task_of(pair[1]), "evacuation (lmtk evacuate runs evacuations)")
    ds, info = run(
        ov,
        command=command or f"lmtoolkit.evacuate({as_overrides(overrides)!r})",
        cfg_pair=pair,
        task="evacuation",
        log=log,
        name=NAME,
    )
    if not info["plan"].axes and ds.sizes.get("replicate") == 1:
        ds = ds.squeeze("replicate", drop=True)
    return ds, info


# -- CLI ---------------------------------------------------------------------------------------
def cmd_evacuate(args) -> int:
    if args.output:
        check_writable(args.output, "--output", DATASET_SUFFIXES)
    ds, info = run_evacuation(
        args.overrides,
        command="lmtk evacuate " + " ".join(args.overrides),
        log=lambda m: print(m, file=sys.stderr),
    )
    extra = [d for d in ds["makespan"].dims]
    if extra:
        print(f"makespan (s) over {', '.join(extra)}:")
        print(ds["makespan"].to_series().to_string())
    else:
        print(
            f"evacuation: {ds.sizes['vm']} VMs, concurrency {ds.concurrency.item():g}, "
            f"makespan {ds.makespan.item():.1f} s, {ds.total_transferred.item() / 2**30:.2f} GiB sent"
            + (f", energy {ds.energy_total.item() / 1e3:.1f} kJ" if "energy_total" in ds else "")
        )
        left = ~ds.completed.values.astype(bool)
        if left.any():
            print(
                f"  {int(left.sum())} VM(s) not moved: they cannot converge at their share and stopped at "
                "policy.timeout_s (they stay on the source)"
            )
        print(f"  {'vm':12s} {'dest':10s} {'start s':>8s} {'end s':>8s} {'down ms':>8s} {'GiB':>7s}  done")
        for i in range(ds.sizes["vm"]):
            print(
                f"  {str(ds.vm.values[i]):12s} {str(ds.destination.values[i]):10s} "
                f"{ds.start.values[i]:8.1f} {ds.end.values[i]:8.1f} {ds.downtime.values[i] * 1000:8.0f} "
                f"{ds.transferred.values[i] / 2**30:7.2f}  {'no' if left[i] else 'yes'}"
            )
    print(("served from cache: " if info["cached"] else "wrote ") + str(info["path"]))
    if args.output:
        write_dataset(ds, args.output)
        print(f"wrote {args.output}")
    return 0


def add_commands(sub) -> None:
    e = sub.add_parser("evacuate", help="evacuate a host: concurrent migrations sharing links")
    e.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. policy=vmware evacuation.order=given")
    e.add_argument("-o", "--output", help="netCDF file to write")
    e.set_defaults(func=cmd_evacuate)
