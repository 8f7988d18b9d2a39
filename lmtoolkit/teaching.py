"""Helpers for the teaching notebooks (``notebooks/0x_*``): small runs a student can explore.

* :func:`dirty_bitmap_rounds` — one page-engine migration plus its dirty bitmap at every
  sync, down-sampled to ``bins`` address bins (dim ``address``, share of pages dirty);
* :func:`explore_precopy` / :func:`interactive_precopy` — the pre-copy explorer (sliders for
  bandwidth, dirty rate, working set and policy; ipywidgets ``interact``);
* :func:`compare` — a few named variants of one scenario side by side (dim ``case``).

Everything here calls the simulator through :func:`lmtoolkit.runner.compose`; plots come
from :mod:`lmtoolkit.plotting.figures`.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import xarray as xr

from . import dataset, provenance
from .engine.common import ROUND_DETAIL_LIMIT, BatchResult
from .runner import build_scenario, compose

#: policies offered by the explorer
EXPLORER_POLICIES = ("qemu", "xen", "vmware", "hyperv", "hybrid", "postcopy", "stopcopy")


def _address_bins(n_pages: int, bins: int) -> np.ndarray:
    bins = int(max(1, min(bins, n_pages)))
    return np.linspace(0, n_pages, bins + 1).astype(np.int64)


def dirty_bitmap_rounds(overrides: Iterable[str] = (), bins: int = 64) -> xr.Dataset:
    """Simulate one migration on the page engine and keep its dirty bitmap at every sync.

    Returns the :func:`lmtoolkit.simulate` Dataset plus ``dirty_bitmap`` (dims ``round`` ×
    ``address``): the share of the pages in each address bin that are dirty at the sync that
    opens the round — the set the round sends; the last row is the set sent during the
    downtime (or pulled by post-copy).  ``address`` is the bin's first address in MiB.
    """
    from .engine.page import simulate_page

    overrides = list(overrides)
    cfg = compose(overrides + ["engine=page"] if not any(o.startswith("engine=") for o in overrides)
                  else overrides)
    scn = build_scenario(cfg)
    n = scn.vm.pages
    edges = _address_bins(n, bins)
    width = np.diff(edges)
    snaps: list[np.ndarray] = []

    def snapshot(_round: int, dirty: np.ndarray) -> None:
        counts = np.add.reduceat(dirty.view(np.uint8), edges[:-1], dtype=np.int64)
        snaps.append(counts / width)

    rec = simulate_page(scn, snapshot=snapshot)
    attrs = provenance.attrs(cfg, overrides, f"lmtoolkit.teaching.dirty_bitmap_rounds({overrides!r})")
    ds = dataset.to_dataset(BatchResult.from_records([rec]), attrs=attrs)
    # Keep the snapshots that match the kept round records: the first pre-copy rounds and the last.
    if len(snaps) > ROUND_DETAIL_LIMIT + 1:
        snaps = snaps[:ROUND_DETAIL_LIMIT] + snaps[-1:]
    addr = edges[:-1] * scn.vm.page_bytes / 2 ** 20
    bitmap = xr.DataArray(np.asarray(snaps, dtype=float).reshape(len(snaps), -1),
                          dims=("round", "address"),
                          coords={"round": np.arange(len(snaps)),
                                  "address": ("address", addr, {"units": "MiB",
                                                               "long_name": "first address of the bin"})},
                          attrs={"units": "1", "long_name": "share of the bin's pages dirty at the sync"})
    ds = ds.merge(bitmap.rename("dirty_bitmap"), join="outer")
    ds["round"].attrs.update({"long_name": "round index", "units": "1"})
    return ds


def precopy_overrides(bandwidth_gbit_s: float = 1.0, dirty_rate_pages_s: float = 20_000,
                      wss_mib: float | None = 512, policy: str = "qemu",
                      base: Sequence[str] = ()) -> list[str]:
    """Overrides for one explorer setting (a uniform-write guest on top of ``base``)."""
    out = list(base)
    if not any(o.startswith("workload=") for o in out):
        out.append("workload=uniform")
    out += [f"policy={policy}", f"network.bandwidth_gbit_s={float(bandwidth_gbit_s)}",
            f"workload.dirty_rate_pages_s={float(dirty_rate_pages_s)}",
            "workload.wss_mib=null" if wss_mib in (None, 0) else f"workload.wss_mib={float(wss_mib)}"]
    return out


def explore_precopy(bandwidth_gbit_s: float = 1.0, dirty_rate_pages_s: float = 20_000,
                    wss_mib: float | None = 512, policy: str = "qemu",
                    base: Sequence[str] = (), bins: int = 48, show: bool = True):
    """Simulate one setting and draw bytes per round, the dirty set and the bitmap heat map.

    Returns ``(ds, fig)``.  ``wss_mib`` is capped at the VM's memory.
    """
    from .plotting import figures

    cfg = compose(list(base))
    mem_mib = float(cfg.vm.memory_gib) * 1024
    if wss_mib is not None and wss_mib >= mem_mib:
        wss_mib = None
    ds = dirty_bitmap_rounds(precopy_overrides(bandwidth_gbit_s, dirty_rate_pages_s, wss_mib,
                                               policy, base), bins=bins)
    fig = figures.precopy_explorer(ds)
    if show:
        import matplotlib.pyplot as plt
        plt.show()
    return ds, fig


def interactive_precopy(base: Sequence[str] = (), smoke: bool = False, **defaults):
    """The pre-copy explorer with ipywidgets sliders (runs once with the defaults right away).

    With ``smoke=True`` (or without ipywidgets) it just calls :func:`explore_precopy` once, so
    papermill never waits on a widget.  Returns the Dataset of the default setting.
    """
    kw = dict(bandwidth_gbit_s=1.0, dirty_rate_pages_s=20_000.0, wss_mib=512.0, policy="qemu")
    kw.update(defaults)
    ds, _ = explore_precopy(base=base, **kw)
    if smoke:
        return ds
    try:
        import ipywidgets as w
    except ImportError:  # pragma: no cover
        return ds
    mem_mib = float(compose(list(base)).vm.memory_gib) * 1024
    w.interact(lambda bandwidth_gbit_s, dirty_rate_pages_s, wss_mib, policy:
               explore_precopy(bandwidth_gbit_s, dirty_rate_pages_s, wss_mib, policy, base=base),
               bandwidth_gbit_s=w.FloatLogSlider(value=kw["bandwidth_gbit_s"], base=10, min=-1,
                                                 max=2, step=0.1, description="Gbit/s",
                                                 continuous_update=False),
               dirty_rate_pages_s=w.FloatLogSlider(value=kw["dirty_rate_pages_s"], base=10, min=2,
                                                   max=6, step=0.1, description="pages/s",
                                                   continuous_update=False),
               wss_mib=w.FloatSlider(value=min(kw["wss_mib"], mem_mib), min=16, max=mem_mib,
                                     step=16, description="WSS MiB", continuous_update=False),
               policy=w.Dropdown(options=list(EXPLORER_POLICIES), value=kw["policy"],
                                 description="policy"))
    return ds


def compare(cases: Mapping[str, Sequence[str]], base: Sequence[str] = (),
            variables: Sequence[str] | None = None) -> xr.Dataset:
    """Simulate each named case (``base`` + its overrides); stack the scalars along ``case``."""
    from .api import simulate

    parts = []
    for name, ov in cases.items():
        ds = simulate(list(base) + list(ov))
        keep = [v for v in (variables or ds.data_vars) if "round" not in ds[v].dims]
        parts.append(ds[keep].expand_dims(case=[name]))
    out = xr.concat(parts, dim="case", combine_attrs="drop_conflicts")
    out["case"].attrs["long_name"] = "case"
    out.attrs["lmt_cases"] = repr({k: list(v) for k, v in cases.items()})
    return out
