"""Host evacuation: every VM of one host migrates away, several at a time (issue 7).

    import lmtoolkit as lmt
    ds = lmt.evacuate(["policy=vmware", "evacuation.order=smallest_first"])
    ds.end.max(), ds.makespan             # dim `vm`: start, end, duration, downtime, transferred

    lmtk evacuate policy=hyperv evacuation=rack
    lmtk evacuate experiment=evacuation_order      # sweep.axes -> dims (e.g. `order`)

The scenario is the ``evacuation`` config group (``configs/evacuation/``): a ``source`` host
and ``destinations`` with their link rates (``link_gbit_s``, full duplex; payload share
``network.efficiency``, minus ``network.background_gbit_s``) and free memory, the VMs
(``memory_gib``, ``dirty_rate_pages_s``, ``wss_mib``, ``count``; workload shape, policy,
host from the rest of the config — ``workload=uniform`` unless given), an ``order`` and a
``concurrency`` limit per host (null = the policy's: VMware ``concurrent_limit_1gbe`` (4) /
``concurrent_limit_10gbe`` (8) by the source link rate, Hyper-V ``simultaneous_migrations``
(2); other policies: no limit).

Placement: in migration order, each VM goes to the destination with the most free memory
that holds it (worst fit); a VM no destination can hold is a :class:`ConfigError`.
Scheduling and link sharing: :func:`lmtoolkit.concurrency.simulate_concurrent` (max-min fair
shares recomputed at every start/end; each migration progresses as the fluid engine says at
its current share).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .errors import ConfigError, check_choice, check_range

ORDERS = ("largest_first", "smallest_first", "hottest_first", "coldest_first", "given")


@dataclass(frozen=True)
class HostLink:
    name: str
    link_gbit_s: float
    free_gib: float = float("inf")
    key: str = "host"

    def __post_init__(self):
        check_range(f"{self.key}.link_gbit_s", self.link_gbit_s, 0, None, lo_open=True)
        check_range(f"{self.key}.free_gib", self.free_gib, 0, None)


@dataclass(frozen=True)
class VmSpec:
    name: str
    scenario: object
    key: str = "vm"


@dataclass(frozen=True)
class Evacuation:
    source: HostLink
    destinations: tuple
    vms: tuple
    order: str = "largest_first"
    concurrency: int | None = None
    setup_s: float = 0.0
    policy: object = None
    network: object = None

    def __post_init__(self):
        check_choice("evacuation.order", self.order, ORDERS)
        if self.concurrency is not None:
            check_range("evacuation.concurrency", self.concurrency, 1, 10 ** 6)
        check_range("evacuation.setup_s", self.setup_s, 0, None)
        if not self.destinations:
            raise ConfigError("evacuation.destinations", [], "at least one destination host")
        if not self.vms:
            raise ConfigError("evacuation.vms", [], "at least one VM")
        names = [self.source.name] + [d.name for d in self.destinations]
        if len(set(names)) != len(names):
            raise ConfigError("evacuation.destinations", names, "distinct host names, none equal to the source")
        bg = self.network.background_gbit_s
        for h in [self.source, *self.destinations]:
            if h.link_gbit_s <= bg:
                raise ConfigError(f"{h.key}.link_gbit_s", h.link_gbit_s,
                                  f"above network.background_gbit_s ({bg:g})")

    # -- plan --------------------------------------------------------------------------------
    def ordered(self) -> list[VmSpec]:
        vms = list(self.vms)
        mem = lambda v: v.scenario.vm.memory_gib  # noqa: E731
        rate = lambda v: v.scenario.workload.dirty_rate_pages_s  # noqa: E731
        key = {"largest_first": lambda v: -mem(v), "smallest_first": mem,
               "hottest_first": lambda v: -rate(v), "coldest_first": rate}.get(self.order)
        return vms if key is None else sorted(vms, key=key)   # stable: ties keep the given order

    def placement(self) -> list[tuple[VmSpec, HostLink]]:
        free = {d.name: d.free_gib for d in self.destinations}
        out = []
        for v in self.ordered():
            need = v.scenario.vm.memory_gib
            d = max(self.destinations, key=lambda h: free[h.name])
            if free[d.name] + 1e-9 < need:
                raise ConfigError(f"{v.key}.memory_gib", need,
                                  f"at most the largest free memory on a destination "
                                  f"({free[d.name]:g} GiB left on {d.name})")
            free[d.name] -= need
            out.append((v, d))
        return out

    def limit(self) -> int | None:
        if self.concurrency is not None:
            return int(self.concurrency)
        p = self.policy
        if hasattr(p, "concurrent_limit_10gbe"):
            ten = self.source.link_gbit_s >= 10.0
            return int(p.concurrent_limit_10gbe if ten else p.concurrent_limit_1gbe)
        if hasattr(p, "simultaneous_migrations"):
            return int(p.simultaneous_migrations)
        return None

    def link_bytes_s(self, h: HostLink) -> float:
        net = self.network
        return (h.link_gbit_s - net.background_gbit_s) * 1e9 * net.efficiency / 8.0

    def run(self):
        """Simulate; returns (placement, outcomes, concurrency limit)."""
        import dataclasses

        from .concurrency import Planned, simulate_concurrent
        plan, hosts = [], {self.source.name: self.link_bytes_s(self.source)}
        for d in self.destinations:
            hosts[d.name] = self.link_bytes_s(d)
        placed = self.placement()
        for v, d in placed:
            gbit = min(self.source.link_gbit_s, d.link_gbit_s)
            net = dataclasses.replace(v.scenario.network, bandwidth_gbit_s=gbit)
            plan.append(Planned(v.name, dataclasses.replace(v.scenario, network=net),
                                self.source.name, d.name))
        lim = self.limit()
        return placed, simulate_concurrent(plan, hosts, limit=lim, setup_s=self.setup_s), lim


# -- API ---------------------------------------------------------------------------------------
def _compose(overrides: list[str]):
    """Compose with the ``evacuation`` group: from the overrides or an experiment if they have
    it, else ``evacuation=default`` (the group is not in the root defaults list, so that single
    migrations' configs and hashes stay as they were)."""
    from .runner import compose
    try:
        cfg = compose(overrides)
        if cfg.get("evacuation") is not None:
            return cfg
    except ConfigError:
        pass
    ov = [("+" + o) if o.split("=")[0] == "evacuation" else o for o in overrides]
    if not any(o.startswith("+evacuation=") for o in ov):
        ov = ["+evacuation=default"] + ov
    return compose(ov)


def evacuate_point(overrides: list[str]):
    """One evacuation (no sweep axes) -> Dataset with dim ``vm``."""
    import xarray as xr

    from .runner import build_evacuation
    overrides = list(overrides)
    if not any(o.split("=")[0].lstrip("+~") == "workload" for o in overrides):
        overrides = ["workload=uniform"] + overrides
    cfg = _compose(overrides)
    ev = build_evacuation(cfg)
    placed, outs, lim = ev.run()
    # The vm dim lists VMs as the config gives them (so points of a sweep align); ``rank`` is
    # each VM's position in the migration order.
    given = [v.name for v in ev.vms]
    pos = {o.name: i for i, o in enumerate(outs)}
    idx = [pos[n] for n in given]
    rank = np.argsort(np.argsort([o.start_s for o in outs], kind="stable"), kind="stable")[idx] + 1
    order_rank = np.array(idx) + 1
    outs = [outs[i] for i in idx]
    placed = [placed[i] for i in idx]
    names = [o.name for o in outs]
    mem = [v.scenario.vm.memory_bytes for v, _ in placed]
    rate = [v.scenario.workload.dirty_rate_pages_s for v, _ in placed]

    def var(vals, units, long):
        return ("vm", np.asarray(vals), {"units": units, "long_name": long})

    start = np.array([o.start_s for o in outs])
    end = np.array([o.end_s for o in outs])
    ds = xr.Dataset({
        "start": var(start, "s", "migration start (connection set-up begins)"),
        "end": var(end, "s", "VM running on the destination"),
        "duration": var(end - start, "s", "migration time including set-up"),
        "downtime": var([o.downtime_s for o in outs], "s", "VM paused at the switchover"),
        "transferred": var([o.transferred_bytes for o in outs], "bytes", "bytes sent for this VM"),
        "mean_rate": var([o.mean_rate_bytes_s for o in outs], "bytes s-1",
                         "mean payload rate while data flowed"),
        "completed": var([o.completed for o in outs], "1", "the VM runs on the destination"),
        "memory": var(mem, "bytes", "guest memory size"),
        "dirty_rate": var(rate, "pages s-1", "page-write events per second"),
        "destination": ("vm", np.array([d.name for _, d in placed]), {"long_name": "destination host"}),
        "makespan": ((), float(np.nanmax(end)), {"units": "s", "long_name": "evacuation makespan"}),
        "total_transferred": ((), float(sum(o.transferred_bytes for o in outs)),
                              {"units": "bytes", "long_name": "bytes sent by all migrations"}),
        "concurrency": ((), float(lim) if lim else np.inf,
                        {"units": "1", "long_name": "migrations at once per host (inf = no limit)"}),
        "rank": var(order_rank, "1", "position in the migration order (evacuation.order)"),
        "start_rank": var(rank, "1", "position by actual start time"),
    }, coords={"vm": ("vm", np.array(names), {"long_name": "virtual machine"})})
    return ds, cfg


def evacuate(overrides: Iterable[str] = (), command: str | None = None):
    """Simulate a host evacuation described by Hydra ``overrides``; an ``xarray.Dataset``.

    Dims: ``vm`` plus one per ``sweep.axes`` entry of an experiment (e.g. ``order``).
    """
    import xarray as xr

    from . import provenance
    overrides = list(overrides)
    cfg = _compose(overrides)
    axes = dict((cfg.get("sweep") or {}).get("axes") or {})
    if not axes:
        ds, cfg = evacuate_point(overrides)
    else:
        dims, keys, values = list(axes), [axes[d]["key"] for d in axes], [list(axes[d]["values"]) for d in axes]
        parts = []
        for combo in itertools.product(*values):
            extra = [f"{k}={v}" for k, v in zip(keys, combo)]
            pt, _ = evacuate_point(overrides + extra)
            parts.append(pt.expand_dims({d: [v] for d, v in zip(dims, combo)}))
        nested = np.empty([len(v) for v in values], dtype=object)
        for i, pt in enumerate(parts):
            nested[np.unravel_index(i, nested.shape)] = pt
        ds = xr.combine_nested(nested.tolist(), concat_dim=dims, data_vars="all",
                               combine_attrs="drop_conflicts")
        for d, k in zip(dims, keys):
            ds[d].attrs.update({"long_name": str(k)})
    attrs = provenance.attrs(cfg, overrides, command or f"lmtoolkit.evacuate({overrides!r})")
    attrs["title"] = str(cfg.get("title", "host evacuation"))
    ds.attrs.update({"Conventions": "CF-1.10", "source": "lmtoolkit"})
    ds.attrs.update(attrs)
    return ds


# -- CLI ---------------------------------------------------------------------------------------
def cmd_evacuate(args) -> int:
    from .paths import results_dir
    from .io import write_dataset
    ds = evacuate(args.overrides, command="lmtk evacuate " + " ".join(args.overrides))
    extra = [d for d in ds.dims if d != "vm"]
    if extra:
        ms = ds["makespan"].to_series()
        print(f"makespan (s) over {', '.join(extra)}:")
        print(ms.to_string())
    else:
        print(f"evacuation: {ds.sizes['vm']} VMs, concurrency {ds.concurrency.item():g}, "
              f"makespan {ds.makespan.item():.1f} s, {ds.total_transferred.item() / 2**30:.2f} GiB sent")
        print(f"  {'vm':12s} {'dest':10s} {'start s':>8s} {'end s':>8s} {'down ms':>8s} {'GiB':>7s}")
        for i in range(ds.sizes["vm"]):
            print(f"  {str(ds.vm.values[i]):12s} {str(ds.destination.values[i]):10s} "
                  f"{ds.start.values[i]:8.1f} {ds.end.values[i]:8.1f} {ds.downtime.values[i] * 1000:8.0f} "
                  f"{ds.transferred.values[i] / 2**30:7.2f}")
    from .runner import compose
    cfg = _compose(args.overrides)
    out = args.output or (results_dir(cfg) / "evacuations" / f"evacuation_{ds.attrs['lmt_config_hash']}.nc")
    write_dataset(ds, out)
    print(f"wrote {out}")
    return 0


def add_commands(sub) -> None:
    e = sub.add_parser("evacuate", help="evacuate a host: concurrent migrations sharing links")
    e.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. policy=vmware evacuation.order=given")
    e.add_argument("-o", "--output", help="netCDF file to write")
    e.set_defaults(func=cmd_evacuate)
