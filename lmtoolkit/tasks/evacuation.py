"""One host evacuation per point: every VM of a host migrates away, several at a time.

The scenario is the ``evacuation`` config group (``configs/evacuation/``, see
:class:`~lmtoolkit.model.evacuation.Evacuation`); the VMs share the host links max-min
fairly (:func:`lmtoolkit.concurrency.simulate_concurrent`), each migration progressing as
the fluid engine says at its current share, so an evacuation is deterministic (the seed is
not used).  Results have a ``vm`` dim: VMs in the order the config lists them (points of a
sweep align); ``rank`` is each VM's place in the migration order, ``start_rank`` by start.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..concurrency import Planned, simulate_concurrent
from ..model.energy import hosts_idle_energy, migration_energy, scenario_constants, stack_constants
from ..runner import build_evacuation, build_power, check_evacuation_overrides, evacuation_unread_keys
from .base import Task

#: per-VM variables: name -> (units, long name, fill for a VM a point does not have)
PER_VM = {
    "start": ("s", "migration start (connection set-up begins)", np.nan),
    "end": ("s", "VM running on the destination", np.nan),
    "duration": ("s", "migration time including set-up", np.nan),
    "downtime": ("s", "VM paused at the switchover", np.nan),
    "transferred": ("bytes", "bytes sent for this VM", np.nan),
    "mean_rate": ("bytes s-1", "mean payload rate while data flowed", np.nan),
    "completed": ("1", "the VM runs on the destination", False),
    "memory": ("bytes", "guest memory size", np.nan),
    "dirty_rate": ("s-1", "page-write events per second", np.nan),
    "rank": ("1", "position in the migration order (evacuation.order)", 0),
    "start_rank": ("1", "position by actual start time", 0),
    "destination": (None, "destination host", ""),
    "energy": ("J", "energy of this VM's migration: both hosts' CPU work and the network", np.nan),
}
#: per-evacuation variables: name -> (units, long name)
SCALARS = {
    "makespan": ("s", "evacuation makespan"),
    "total_transferred": ("bytes", "bytes sent by all migrations"),
    "concurrency": ("1", "migrations at once per host (inf = no limit)"),
    "energy_source": ("J", "source host: idle power until the last migration ends + the migrations' work"),
    "energy_destination": (
        "J",
        "destination hosts: idle power until the last migration ends + the migrations' work",
    ),
    "energy_network": ("J", "energy of the evacuation's bits in NICs and switches"),
    "energy_total": ("J", "evacuation energy: source + destinations + network"),
}


def simulate_evacuation(ev):
    """Place and run the evacuation; returns (placement, outcomes, concurrency limit)."""
    hosts = {ev.source.name: ev.link_bytes_s(ev.source)}
    for d in ev.destinations:
        hosts[d.name] = ev.link_bytes_s(d)
    placed = ev.placement()
    plan = []
    for v, d in placed:
        net = dataclasses.replace(
            v.scenario.network, bandwidth_gbit_s=min(ev.source.link_gbit_s, d.link_gbit_s)
        )
        plan.append(Planned(v.name, dataclasses.replace(v.scenario, network=net), ev.source.name, d.name))
    lim = ev.limit()
    return placed, simulate_concurrent(plan, hosts, limit=lim, setup_s=ev.setup_s), lim


@dataclasses.dataclass
class EvacuationBatch:
    """Evacuations as arrays: per-VM ``(n, n_vm)`` over ``vm_names``, scalars ``(n,)``."""

    vm_names: list
    per_vm: dict
    scalars: dict

    @property
    def n(self) -> int:
        return len(next(iter(self.scalars.values())))

    def take(self, order) -> EvacuationBatch:
        return EvacuationBatch(
            list(self.vm_names),
            {k: v[order] for k, v in self.per_vm.items()},
            {k: v[order] for k, v in self.scalars.items()},
        )

    def aligned(self, names: list) -> EvacuationBatch:
        """The same points over ``names`` (a superset of ``vm_names``), filled where absent."""
        if list(names) == list(self.vm_names):
            return self
        idx = {n: i for i, n in enumerate(names)}
        cols = [idx[n] for n in self.vm_names]
        per_vm = {}
        for k, v in self.per_vm.items():
            out = np.full((self.n, len(names)), PER_VM[k][2], dtype=v.dtype)
            out[:, cols] = v
            per_vm[k] = out
        return EvacuationBatch(list(names), per_vm, dict(self.scalars))


def evacuation_energy(ev, placed, outs, makespan, power) -> tuple[np.ndarray, dict]:
    """(per-VM migration energy, evacuation energy variables), J.  Each VM's migration costs
    its CPU work and bytes (:func:`lmtoolkit.model.energy.migration_energy`, no idle share);
    every host — the source and all destinations — draws ``power.idle_w`` until the last
    migration ends.  The concurrency model keeps time, bytes and downtime per VM, so post-copy
    faults and throttling add nothing here."""
    consts = stack_constants([scenario_constants(v.scenario, power, idle_share=0.0) for v, _ in placed])
    n = len(outs)
    rec = {
        "total_time_s": np.array([o.end_s - o.start_s for o in outs]),
        "downtime_s": np.array([o.downtime_s for o in outs]),
        "transferred_bytes": np.array([o.transferred_bytes for o in outs]),
        "memory_bytes": np.array([float(v.scenario.vm.memory_bytes) for v, _ in placed]),
        "guest_slowdown": np.zeros(n),
        "postcopy_faults": np.zeros(n),
    }
    e = migration_energy(rec, consts)
    idle_src = hosts_idle_energy(power.idle_w, 1, makespan)
    idle_dst = hosts_idle_energy(power.idle_w, len(ev.destinations), makespan)
    out = {
        "energy_source": idle_src + e["energy_source"].sum(),
        "energy_destination": idle_dst + e["energy_destination"].sum(),
        "energy_network": e["energy_network"].sum(),
    }
    out["energy_total"] = out["energy_source"] + out["energy_destination"] + out["energy_network"]
    return e["energy_total"], {k: np.array([float(v)]) for k, v in out.items()}


def point(ev, power=None) -> EvacuationBatch:
    """One evacuation as a one-point batch (energy variables when ``power`` is given)."""
    placed, outs, lim = simulate_evacuation(ev)
    given = [v.name for v in ev.vms]
    pos = {o.name: i for i, o in enumerate(outs)}
    idx = [pos[n] for n in given]
    start_rank = np.argsort(np.argsort([o.start_s for o in outs], kind="stable"), kind="stable")[idx] + 1
    outs = [outs[i] for i in idx]
    placed = [placed[i] for i in idx]
    start = np.array([o.start_s for o in outs])
    end = np.array([o.end_s for o in outs])
    per_vm = {
        "start": start,
        "end": end,
        "duration": end - start,
        "downtime": np.array([o.downtime_s for o in outs]),
        "transferred": np.array([o.transferred_bytes for o in outs]),
        "mean_rate": np.array([o.mean_rate_bytes_s for o in outs]),
        "completed": np.array([o.completed for o in outs], dtype=bool),
        "memory": np.array([float(v.scenario.vm.memory_bytes) for v, _ in placed]),
        "dirty_rate": np.array([float(v.scenario.workload.dirty_rate_pages_s) for v, _ in placed]),
        "rank": np.array(idx, dtype=np.int64) + 1,
        "start_rank": np.asarray(start_rank, dtype=np.int64),
        "destination": np.array([d.name for _, d in placed], dtype=str),
    }
    scalars = {
        "makespan": np.array([float(np.nanmax(end))]),
        "total_transferred": np.array([float(sum(o.transferred_bytes for o in outs))]),
        "concurrency": np.array([float(lim) if lim else np.inf]),
    }
    if power is not None:
        per_vm["energy"], energy = evacuation_energy(ev, placed, outs, float(np.nanmax(end)), power)
        scalars.update(energy)
    return EvacuationBatch(given, {k: v[None, :] for k, v in per_vm.items()}, scalars)


class EvacuationTask(Task):
    name = "evacuation"
    title = "lmtoolkit host evacuation"
    columns = False
    table = (
        ("makespan", "makespan [s]", 1.0),
        ("total_transferred", "sent [GiB]", 1 / 1024**3),
        ("energy_total", "energy [kJ]", 1e-3),
    )

    def check_plan(self, overrides, cfg, axes):
        check_evacuation_overrides(overrides, cfg, axes)

    def unread_keys(self, overrides, cfg, axes):
        return evacuation_unread_keys(cfg, overrides, axes)

    def template(self, cfg):
        ev = build_evacuation(cfg)
        ev.placement()  # VMs the destinations cannot hold: refused with the plan, before any work
        return ev

    def run_cell(self, cfg, columns, seeds, round_detail):
        one = point(build_evacuation(cfg), build_power(cfg))  # deterministic: the seed is not used
        return one.take(np.zeros(len(seeds), dtype=np.int64))

    def concat(self, parts):
        names = list(dict.fromkeys(n for p in parts for n in p.vm_names))
        parts = [p.aligned(names) for p in parts]
        return EvacuationBatch(
            names,
            {k: np.concatenate([p.per_vm[k] for p in parts]) for k in parts[0].per_vm},
            {k: np.concatenate([p.scalars[k] for p in parts]) for k in parts[0].scalars},
        )

    def to_arrays(self, b) -> dict:
        out = {f"v_{k}": v for k, v in b.per_vm.items()}
        out.update({f"s_{k}": v for k, v in b.scalars.items()})
        out["vm_names"] = np.array(b.vm_names, dtype=str)
        return out

    def from_arrays(self, arrs):
        return EvacuationBatch(
            [str(n) for n in arrs["vm_names"]],
            {k[2:]: v for k, v in arrs.items() if k.startswith("v_")},
            {k[2:]: v for k, v in arrs.items() if k.startswith("s_")},
        )

    def to_dataset(self, batch, dims, coords, attrs, coord_attrs):
        import xarray as xr

        shape = tuple(len(coords[d]) for d in dims)
        data = {}
        for k, (units, long, _) in PER_VM.items():
            if k not in batch.per_vm:
                continue
            a = {"long_name": long} if units is None else {"units": units, "long_name": long}
            data[k] = (dims + ["vm"], batch.per_vm[k].reshape(shape + (len(batch.vm_names),)), a)
        for k, (units, long) in SCALARS.items():
            if k not in batch.scalars:  # a batch without energy (point() without power)
                continue
            data[k] = (dims, batch.scalars[k].reshape(shape), {"units": units, "long_name": long})
        ds = xr.Dataset(
            data, coords={"vm": ("vm", np.array(batch.vm_names, dtype=str), {"long_name": "virtual machine"})}
        )
        for d in dims:
            ds = ds.assign_coords({d: (d, np.asarray(coords[d]), coord_attrs.get(d, {}))})
        ds.attrs.update(
            {"Conventions": "CF-1.10", "title": "lmtoolkit host evacuation", "source": "lmtoolkit"}
        )
        ds.attrs.update(attrs)
        return ds


__all__ = ["EvacuationTask", "EvacuationBatch", "simulate_evacuation", "point", "PER_VM", "SCALARS"]
