"""Small synthetic Datasets shaped like the experiments' (no simulation) for figure tests."""

from __future__ import annotations

import numpy as np
import xarray as xr

UNITS = {
    "total_time": "s",
    "downtime": "s",
    "transferred": "bytes",
    "guest_slowdown": "1",
    "throttle_max": "1",
    "rounds": "1",
    "postcopy_faults": "1",
    "completed": "1",
    "converged": "1",
    "precopy_transferred": "bytes",
    "postcopy_time": "s",
    "energy_total": "J",
    "guest_lost_cpu_s": "s",
}


def experiment_like(**axes) -> xr.Dataset:
    """A Dataset with the given sweep axes (name -> values), 2 replicates and 3 rounds."""
    dims = list(axes) + ["replicate"]
    coords = {k: list(v) for k, v in axes.items()}
    coords["replicate"] = [0, 1]
    shape = tuple(len(coords[d]) for d in dims)
    rng = np.random.default_rng(0)
    data = {}
    for name, units in UNITS.items():
        v = rng.uniform(0.5, 2.0, size=shape)
        if name in ("completed", "converged"):
            v = v > 0.7
        if name == "transferred":
            v = v * 2**31
        data[name] = (dims, v, {"units": units, "long_name": name})
    data["round_bytes"] = (dims + ["round"], rng.uniform(1e6, 1e9, size=shape + (3,)), {"units": "bytes"})
    ds = xr.Dataset(data, coords={**coords, "round": [0, 1, 2]})
    ds.attrs.update(lmt_config_hash="0123456789abcdef", lmt_overrides="[]", title="synthetic")
    return ds


EXPERIMENTS = {
    "quickstart": dict(
        policy=["vmware", "hyperv"], network=["1gbe", "10gbe"], dirty_rate=[2000, 20000, 60000]
    ),
    "bandwidth_vs_dirty_rate": dict(bandwidth=[1.0, 10.0, 25.0], dirty_rate=[1000, 5000, 20000]),
    "vmware_vs_hyperv": dict(
        policy=["vmware", "hyperv"], workload=["idle", "database"], network=["1gbe", "10gbe"]
    ),
    "downtime_target": dict(downtime_limit=[10.0, 300.0, 3000.0], dirty_rate=[20000, 80000]),
    "auto_converge": dict(auto_converge=[False, True], network=["1gbe", "10gbe"], dirty_rate=[20000, 60000]),
    "postcopy_vs_precopy": dict(policy=["qemu", "postcopy", "hybrid", "stopcopy"], dirty_rate=[5000, 50000]),
    "fluid_map_100k": dict(bandwidth=[1.0, 10.0, 100.0], dirty_rate=[1000.0, 30000.0, 1e6]),
    "shared_network": dict(network=["1gbe", "10gbe"], background=[0.0, 0.5, 0.9], dirty_rate=[5000, 20000]),
    "memory_scaling": dict(
        memory=[1.0, 8.0, 64.0], policy=["vmware", "hyperv"], network=["10gbe", "100gbe_rdma"]
    ),
    "energy_pareto": dict(
        policy=["qemu", "postcopy", "hyperv"], workload=["idle", "hpc"], network=["1gbe", "10gbe"]
    ),
}


def evacuation_like() -> xr.Dataset:
    """Shaped like ``lmt.evacuate(["experiment=evacuation_order"])``: order × links × vm."""
    rng = np.random.default_rng(1)
    orders, links, vms = ["largest_first", "smallest_first"], ["gigabit", "default"], ["a", "b", "c"]
    end = rng.uniform(10, 100, size=(2, 2, 3))
    return xr.Dataset(
        {
            "end": (("order", "links", "vm"), end, {"units": "s"}),
            "makespan": (("order", "links"), end.max(-1), {"units": "s"}),
        },
        coords={"order": orders, "links": links, "vm": vms},
    )
