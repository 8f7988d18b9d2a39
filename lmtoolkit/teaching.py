"""Helpers for the teaching notebooks (``notebooks/0x_*``): small runs a student can explore,
explorers with widgets, and exercises that check themselves.

* :func:`dirty_bitmap_rounds` — one page-engine migration plus its dirty bitmap at every
  sync, down-sampled to ``bins`` bins (by address, or by page rank: the working set first);
* explorers, one per lesson — :func:`interactive_precopy` (00), :func:`explore_network` (01),
  :func:`explore_vendors` (02), :func:`explore_postcopy` (03), :func:`explore_numa` and
  :func:`explore_copy_errors` (04).  Each draws **one** figure and one line of numbers into a
  widget output that is redrawn when a control moves, and returns the Dataset of the
  default setting (so the cell shows no repr).  Run by papermill (``lmtk notebooks``, the
  course site) or with ``smoke=True`` they draw the default setting once, without widgets;
* :func:`compare` — a few named variants of one scenario side by side (dim ``case``);
* :func:`check` — an exercise's self-check: ``check("00.1", answer, ds)`` shows ✓ / ✗ with a
  hint, or "not answered yet" while ``answer`` is ``None``; solutions are not in here but in
  the notebooks' hidden ``solution`` cells (see :mod:`lmtoolkit.notebooks`, editions).

Everything here calls the simulator through :func:`lmtoolkit.runner.compose`; plots come
from :mod:`lmtoolkit.plotting.figures`.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from . import dataset, provenance
from .engine.common import ROUND_DETAIL_LIMIT, BatchResult
from .runner import build_scenario, compose
from .units import MIB

#: policies offered by the pre-copy explorer
EXPLORER_POLICIES = ("qemu", "xen", "vmware", "hyperv", "hybrid", "postcopy", "stopcopy")
#: each migration teaching notebook's guest (its first cell's ``base``: :func:`guest`)
GUESTS = {
    "00": ("vm.memory_gib=1",),
    "01": (
        "vm.memory_gib=2",
        "workload=uniform",
        "workload.dirty_rate_pages_s=15000",
        "workload.wss_mib=1024",
        "policy=qemu",
        "policy.timeout_s=120",
    ),
    "02": ("vm.memory_gib=2", "workload=hotcold", "workload.dirty_rate_pages_s=80000", "network=1gbe"),
    "03": (
        "vm.memory_gib=2",
        "workload=hotcold",
        "workload.dirty_rate_pages_s=80000",
        "network=1gbe",
        "policy.timeout_s=60",
    ),
}
#: the four links of notebook 01 (dedicated or shared with other traffic)
NETWORK_CASES = {
    "1 GbE dedicated": ["network=1gbe"],
    "1 GbE shared": ["network=1gbe", "network.background_gbit_s=0.5"],
    "10 GbE dedicated": ["network=10gbe"],
    "10 GbE shared": ["network=10gbe", "network.background_gbit_s=5"],
}
#: notebook 01's exercise 1: an idle guest (``IDLE_GUEST`` + the user's overrides) on each link
IDLE_GUEST, IDLE_LINKS = ("workload=idle",), {"1 GbE": ["network=1gbe"], "10 GbE": ["network=10gbe"]}
#: the pre-copy explorer's first setting (notebook 00)
PRECOPY_DEFAULTS = {
    "bandwidth_gbit_s": 1.0,
    "dirty_rate_pages_s": 20_000.0,
    "wss_mib": 512.0,
    "policy": "qemu",
}
#: the four vendor settings of notebook 02 (case name -> overrides)
VENDOR_CASES = {
    "VMware (SDPS)": ["policy=vmware"],
    "VMware (no SDPS)": ["policy=vmware", "policy.sdps=off"],
    "Hyper-V 2012 R2": ["policy=hyperv"],
    "Hyper-V 2008 R2": ["policy=hyperv_2008r2"],
}
#: the four strategies of notebook 03
STRATEGY_CASES = {
    "pre-copy": ["policy=qemu"],
    "post-copy": ["policy=postcopy"],
    "hybrid": ["policy=hybrid"],
    "stop-and-copy": ["policy=stopcopy"],
}
#: the four ways of protecting pages in notebook 04
PROTECTION_CASES = {
    "no ECC": ["host.ecc=false", "policy.verify_checksums=false"],
    "ECC": ["host.ecc=true", "policy.verify_checksums=false"],
    "no ECC + checksums": ["host.ecc=false", "policy.verify_checksums=true"],
    "ECC + checksums": ["host.ecc=true", "policy.verify_checksums=true"],
}
#: notebook 04's NUMA explorer's first setting (:func:`numa_case`'s VM and destination)
NUMA_DEFAULTS = {"memory_gib": 96.0, "dst_nodes": 4, "dst_node_gib": 32.0}
#: notebook 04's exercise 2: the same VM onto one big destination node
ONE_BIG_NODE = {"memory_gib": 96.0, "dst_nodes": 1, "dst_node_gib": 192.0}
#: notebook 04's copy-error explorer's first setting (:func:`copy_errors`' settings)
COPY_ERROR_DEFAULTS = {"bit_error_rate": 1e-15, "network": "10gbe", "spare_cores": 4.0}
#: notebook 04's copy-error exercises: the guest (before the user's overrides) and the settings
COPY_ERROR_EXERCISES = {
    "04.3": (("vm.memory_gib=8", "workload=idle"), {}),
    "04.4": (("workload=idle",), {"network": "100gbe_rdma", "spare_cores": 1.0}),
}


# -- dirty bitmaps ------------------------------------------------------------------------------
def _address_bins(n_pages: int, bins: int) -> np.ndarray:
    bins = int(max(1, min(bins, n_pages)))
    return np.linspace(0, n_pages, bins + 1).astype(np.int64)


def dirty_bitmap_rounds(overrides: Iterable[str] = (), bins: int = 64, order: str = "address") -> xr.Dataset:
    """Simulate one migration on the page engine and keep its dirty bitmap at every sync.

    Returns the :func:`lmtoolkit.simulate` Dataset plus ``dirty_bitmap`` (dims ``round`` ×
    ``address``, or ``round`` × ``rank`` with ``order="rank"``): the share of the pages in
    each bin that are dirty at the sync that opens the round — the set the round sends; the
    last row is the set sent during the downtime (or pulled by post-copy).  ``address`` is
    the bin's first guest physical address in MiB.  With ``order="rank"`` the pages are put in
    the workload's order (hottest first: the working set, then the pages it never writes;
    with ``pattern: random`` these are scattered over all addresses; a phased workload's
    order is its first phase's, :meth:`~lmtoolkit.model.workload.Workload.pages_of` at writer
    time 0) and the attribute ``wss_bins`` says where the working set ends.
    """
    from .engine.page import simulate_page

    if order not in ("address", "rank"):
        raise ValueError(f"order must be 'address' or 'rank', not {order!r}")
    overrides = list(overrides)
    cfg = compose(
        overrides + ["engine=page"] if not any(o.startswith("engine=") for o in overrides) else overrides
    )
    scn = build_scenario(cfg)
    n = scn.vm.pages
    edges = _address_bins(n, bins)
    width = np.diff(edges)
    # the layout of the workload writing at the start (a phased workload: its first phase's)
    perm = scn.workload.pages_of(np.arange(n), n, scn.vm.page_bytes, 0.0) if order == "rank" else None
    snaps: list[np.ndarray] = []

    def snapshot(_round: int, dirty: np.ndarray) -> None:
        bits = dirty.view(np.uint8) if perm is None else dirty[perm].view(np.uint8)
        counts = np.add.reduceat(bits, edges[:-1], dtype=np.int64)
        snaps.append(counts / width)

    rec = simulate_page(scn, snapshot=snapshot)
    attrs = provenance.attrs(cfg, overrides, f"lmtoolkit.teaching.dirty_bitmap_rounds({overrides!r})")
    ds = dataset.to_dataset(BatchResult.from_records([rec]), attrs=attrs)
    # Keep the snapshots that match the kept round records: the first pre-copy rounds and the last.
    if len(snaps) > ROUND_DETAIL_LIMIT + 1:
        snaps = snaps[:ROUND_DETAIL_LIMIT] + snaps[-1:]
    start = edges[:-1] * scn.vm.page_bytes / 2**20
    dim = "address" if order == "address" else "rank"
    long_name = (
        "first address of the bin"
        if order == "address"
        else "memory before the bin, pages ordered hottest first"
    )
    bm_attrs = {"units": "1", "long_name": "share of the bin's pages dirty at the sync"}
    if order == "rank":
        wss = scn.workload.wss_pages(n, scn.vm.page_bytes)
        bm_attrs["wss_bins"] = float(wss) / n * (len(edges) - 1)
    bitmap = xr.DataArray(
        np.asarray(snaps, dtype=float).reshape(len(snaps), -1),
        dims=("round", dim),
        coords={"round": np.arange(len(snaps)), dim: (dim, start, {"units": MIB, "long_name": long_name})},
        attrs=bm_attrs,
    )
    ds = ds.merge(bitmap.rename("dirty_bitmap"), join="outer")
    ds["dirty_bitmap"].attrs.update(bm_attrs)
    ds["round"].attrs.update({"long_name": "round index", "units": "1"})
    return ds


def precopy_overrides(
    bandwidth_gbit_s: float = 1.0,
    dirty_rate_pages_s: float = 20_000,
    wss_mib: float | None = 512,
    policy: str = "qemu",
    base: Sequence[str] = (),
) -> list[str]:
    """Overrides for one explorer setting (a uniform-write guest on top of ``base``)."""
    out = list(base)
    if not any(o.startswith("workload=") for o in out):
        out.append("workload=uniform")
    out += [
        f"policy={policy}",
        f"network.bandwidth_gbit_s={float(bandwidth_gbit_s)}",
        f"workload.dirty_rate_pages_s={float(dirty_rate_pages_s)}",
        "workload.wss_mib=null" if wss_mib in (None, 0) else f"workload.wss_mib={float(wss_mib)}",
    ]
    return out


def explorer_overrides(
    bandwidth_gbit_s: float,
    dirty_rate_pages_s: float,
    wss_mib: float | None,
    policy: str,
    base: Sequence[str],
) -> list[str]:
    """:func:`precopy_overrides` of one explorer setting, the working set capped at the VM's
    memory (one as large as memory is all of it: ``None``)."""
    mem_mib = float(compose(list(base)).vm.memory_gib) * 1024
    if wss_mib is not None and wss_mib >= mem_mib:
        wss_mib = None
    return precopy_overrides(bandwidth_gbit_s, dirty_rate_pages_s, wss_mib, policy, base)


def hot_precopy_overrides(base: Sequence[str]) -> list[str]:
    """Notebook 00's exercise 2: ``base`` writing 60,000 pages/s over all its memory on 1 Gbit/s
    under QEMU, given up after 20 s."""
    return precopy_overrides(1.0, 60_000, None, "qemu", base) + ["policy.timeout_s=20"]


def guest(notebook: str, overrides: Sequence[str] = ()) -> list[str]:
    """Notebook ``notebook``'s guest (:data:`GUESTS`) followed by ``overrides`` (they win)."""
    return [*GUESTS[notebook], *overrides]


def notebook_runs(notebook: str, overrides: Sequence[str] = ()) -> dict[str, list[str]]:
    """The overrides of every migration teaching notebook ``notebook`` (``"00"``…``"04"``)
    simulates at its controls' first settings, by what the notebook calls the run, given the
    notebook's ``cfg.overrides``: what :func:`lmtoolkit.notebooks.check_parameters` composes
    before a kernel starts.  ``{}`` for another notebook."""
    if notebook == "04":
        return _numa_and_ecc_runs(overrides)
    if notebook not in GUESTS:
        return {}
    base = guest(notebook, overrides)
    if notebook == "00":
        return {
            "the explorer's first setting": explorer_overrides(**PRECOPY_DEFAULTS, base=base),
            "exercise 00.2's hot guest": hot_precopy_overrides(base),
        }
    if notebook == "01":
        idle = [*IDLE_GUEST, *overrides]
        return {f"case {k!r}": base + v for k, v in NETWORK_CASES.items()} | {
            f"exercise 01.1's idle guest on {k}": idle + v for k, v in IDLE_LINKS.items()
        }
    cases = VENDOR_CASES if notebook == "02" else STRATEGY_CASES
    return {f"case {k!r}": base + v for k, v in cases.items()}


def _numa_and_ecc_runs(overrides: Sequence[str]) -> dict[str, list[str]]:
    """Notebook 04's runs: its NUMA cases (:data:`NUMA_DEFAULTS`, :data:`ONE_BIG_NODE`) and the
    four protections of its copy-error explorer and exercises."""
    runs = {
        "the NUMA explorer's first setting": numa_overrides(**NUMA_DEFAULTS, base=overrides),
        "exercise 04.2's one big node": numa_overrides(**ONE_BIG_NODE, base=overrides),
    }
    settings = {"the copy-error explorer's first setting": ((), COPY_ERROR_DEFAULTS)} | {
        f"exercise {ex}": spec for ex, spec in COPY_ERROR_EXERCISES.items()
    }
    for label, (guest_, kw) in settings.items():
        cases = copy_error_runs([*guest_, *overrides], **kw)
        runs |= {f"{label}, case {k!r}": v for k, v in cases.items()}
    return runs


def explore_precopy(
    bandwidth_gbit_s: float = 1.0,
    dirty_rate_pages_s: float = 20_000,
    wss_mib: float | None = 512,
    policy: str = "qemu",
    base: Sequence[str] = (),
    bins: int = 48,
    show: bool = False,
    order: str = "rank",
):
    """Simulate one setting and draw bytes per round, the dirty set and the bitmap heat map.

    Returns ``(ds, fig)`` (``show=True`` also displays the figure and closes it, so that it
    is drawn once).  ``wss_mib`` is capped at the VM's memory.
    """
    from .plotting import figures

    ds = dirty_bitmap_rounds(
        explorer_overrides(bandwidth_gbit_s, dirty_rate_pages_s, wss_mib, policy, base),
        bins=bins,
        order=order,
    )
    fig = figures.precopy_explorer(ds)
    if show:
        _show_figure(fig)
    return ds, fig


# -- explorers ----------------------------------------------------------------------------------
@dataclass
class Control:
    """One explorer control: ``kind`` is ``log`` (log slider), ``float``, ``int``, ``choice``
    or ``bool``; ``low``/``high`` are exponents for ``log``."""

    name: str
    label: str
    value: object
    kind: str = "float"
    low: float = 0.0
    high: float = 1.0
    step: float = 1.0
    options: Sequence = ()

    def widget(self):
        import ipywidgets as w

        common = dict(
            description=self.label,
            continuous_update=False,
            style={"description_width": "initial"},
            layout=w.Layout(width="460px"),
        )
        if self.kind == "log":
            return w.FloatLogSlider(
                value=self.value,
                base=10,
                min=self.low,
                max=self.high,
                step=self.step,
                readout_format=".3g",
                **common,
            )
        if self.kind == "float":
            return w.FloatSlider(
                value=self.value, min=self.low, max=self.high, step=self.step, readout_format=".3g", **common
            )
        if self.kind == "int":
            return w.IntSlider(
                value=int(self.value), min=int(self.low), max=int(self.high), step=int(self.step), **common
            )
        if self.kind == "bool":
            return w.Checkbox(
                value=bool(self.value), description=self.label, indent=False, layout=w.Layout(width="460px")
            )
        if self.kind == "choice":
            return w.Dropdown(
                options=list(self.options),
                value=self.value,
                description=self.label,
                style={"description_width": "initial"},
                layout=w.Layout(width="460px"),
            )
        raise ValueError(f"unknown control kind {self.kind!r}")


@dataclass
class View:
    """What an explorer shows for one setting: the Dataset, one figure and one line of numbers."""

    ds: xr.Dataset
    fig: object
    text: str
    extra: dict = field(default_factory=dict)


def static_mode(smoke: bool = False) -> bool:
    """True where widgets make no sense: smoke runs, papermill runs (``lmtk notebooks``, the
    course site: :data:`lmtoolkit.notebooks.ENV_NAME` is set), or no ipywidgets."""
    from .notebooks import ENV_NAME

    if smoke or os.environ.get(ENV_NAME):
        return True
    try:
        import ipywidgets  # noqa: F401
    except ImportError:  # pragma: no cover
        return True
    return False


def _show_figure(fig, metadata: dict | None = None) -> None:
    """Display ``fig`` once and close it (so the inline backend does not draw it again)."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    display(fig, metadata=metadata or {})
    plt.close(fig)


def _numbers_html(text: str) -> str:
    return f'<p class="lmt-numbers"><b>Result:</b> {html.escape(text)}</p>'


def _render(view: View) -> None:
    from IPython.display import HTML, display

    _show_figure(view.fig)
    display(HTML(_numbers_html(view.text)))


def explore(
    draw: Callable[..., View], controls: Sequence[Control], smoke: bool = False, title: str | None = None
) -> xr.Dataset:
    """Show ``draw(**values)`` for the controls' values, and redraw it when one moves.

    Displays the controls and one output area (figure + numbers) — nothing else — and
    returns the Dataset of the default setting.  In :func:`static_mode` it draws the default
    once, without widgets."""
    from IPython.display import HTML, display

    values = {c.name: c.value for c in controls}
    if title:
        display(HTML(f'<p class="lmt-explorer-title"><b>{html.escape(title)}</b></p>'))
    if static_mode(smoke):
        view = draw(**values)
        _render(view)
        return view.ds
    import ipywidgets as w

    widgets = {c.name: c.widget() for c in controls}
    out = w.Output(layout=w.Layout(min_height="300px"))
    status = w.HTML(value="")
    first: dict = {}

    def update(_change=None) -> None:
        status.value = "<i>computing…</i>"
        try:
            view = draw(**{k: wd.value for k, wd in widgets.items()})
        except Exception as e:  # noqa: BLE001 — shown to the student as a sentence, not a traceback
            from .errors import ConfigError

            with out:
                out.clear_output(wait=True)
                if isinstance(e, ConfigError):
                    display(
                        HTML(
                            f'<p class="lmt-numbers">This setting is not possible: {html.escape(str(e))}</p>'
                        )
                    )
                else:
                    raise
            status.value = ""
            return
        first.setdefault("ds", view.ds)
        with out:
            out.clear_output(wait=True)
            _render(view)
        status.value = ""

    for wd in widgets.values():
        wd.observe(update, names="value")
    box = w.VBox(
        [w.HBox([w.VBox(list(widgets.values())), status]), out],
        layout=w.Layout(border="1px solid #ddd", padding="6px"),
    )
    box.add_class("lmt-explorer")
    display(box)
    update()
    return first.get("ds")


def interactive_precopy(base: Sequence[str] = (), smoke: bool = False, **defaults) -> xr.Dataset:
    """Notebook 00's pre-copy explorer: bandwidth, dirty rate, working set and policy.

    Returns the Dataset of the default setting (with its ``dirty_bitmap``)."""
    from .plotting import figures

    kw = {**PRECOPY_DEFAULTS, **defaults}
    mem_mib = float(compose(list(base)).vm.memory_gib) * 1024

    def draw(bandwidth_gbit_s, dirty_rate_pages_s, wss_mib, policy):
        ds, fig = explore_precopy(bandwidth_gbit_s, dirty_rate_pages_s, wss_mib, policy, base=base)
        return View(
            ds,
            fig,
            f"{policy}, {bandwidth_gbit_s:.3g} Gbit/s, "
            f"{dirty_rate_pages_s:,.0f} pages/s: " + figures.outcome(ds),
        )

    return explore(
        draw,
        [
            Control("bandwidth_gbit_s", "link (Gbit/s)", kw["bandwidth_gbit_s"], "log", -1, 2, 0.1),
            Control("dirty_rate_pages_s", "writes (pages/s)", kw["dirty_rate_pages_s"], "log", 2, 6, 0.1),
            Control("wss_mib", "working set (MiB)", min(kw["wss_mib"], mem_mib), "float", 16, mem_mib, 16),
            Control("policy", "policy", kw["policy"], "choice", options=EXPLORER_POLICIES),
        ],
        smoke,
    )


def explore_network(base: Sequence[str] = (), smoke: bool = False) -> xr.Dataset:
    """Notebook 01's explorer: link speed, other traffic on the link and the guest's write
    rate; draws the migration round by round."""
    from .api import simulate
    from .plotting import figures

    def draw(bandwidth_gbit_s, background_share, dirty_rate_pages_s):
        ds = simulate(
            list(base)
            + [
                f"network.bandwidth_gbit_s={float(bandwidth_gbit_s)}",
                f"network.background_gbit_s={float(bandwidth_gbit_s) * background_share}",
                f"workload.dirty_rate_pages_s={float(dirty_rate_pages_s)}",
            ]
        )
        fig = figures.precopy_rounds(ds)
        left = bandwidth_gbit_s * (1 - background_share)
        return View(
            ds,
            fig,
            f"{bandwidth_gbit_s:.3g} Gbit/s link, {background_share:.0%} taken by "
            f"other traffic (≈{left:.3g} Gbit/s left): " + figures.outcome(ds),
        )

    return explore(
        draw,
        [
            Control("bandwidth_gbit_s", "link (Gbit/s)", 1.0, "log", -0.3, 2, 0.1),
            Control("background_share", "other traffic (share of the link)", 0.0, "float", 0, 0.9, 0.1),
            Control("dirty_rate_pages_s", "writes (pages/s)", 15_000.0, "log", 3, 5.5, 0.1),
        ],
        smoke,
    )


def explore_vendors(base: Sequence[str] = (), smoke: bool = False) -> xr.Dataset:
    """Notebook 02's explorer: one vendor setting (:data:`VENDOR_CASES`) at a chosen write
    rate and link speed, round by round, with the guest throttling it costs."""
    from .api import simulate
    from .plotting import figures

    def draw(policy, dirty_rate_pages_s, bandwidth_gbit_s):
        ds = simulate(
            list(base)
            + VENDOR_CASES[policy]
            + [
                f"workload.dirty_rate_pages_s={float(dirty_rate_pages_s)}",
                f"network.bandwidth_gbit_s={float(bandwidth_gbit_s)}",
            ]
        )
        fig = figures.precopy_rounds(ds)
        slow = float(ds["guest_slowdown"].item())
        return View(
            ds,
            fig,
            f"{policy}: "
            + figures.outcome(ds)
            + (f"; guest slowed down by {slow:.0%}" if slow > 0 else "; guest not slowed down"),
        )

    return explore(
        draw,
        [
            Control("policy", "vendor setting", "VMware (SDPS)", "choice", options=list(VENDOR_CASES)),
            Control("dirty_rate_pages_s", "writes (pages/s)", 80_000.0, "log", 3, 5.3, 0.1),
            Control("bandwidth_gbit_s", "link (Gbit/s)", 1.0, "log", -0.3, 1.5, 0.1),
        ],
        smoke,
    )


def explore_postcopy(base: Sequence[str] = (), smoke: bool = False) -> xr.Dataset:
    """Notebook 03's explorer: the four strategies (:data:`STRATEGY_CASES`) side by side at a
    chosen write rate and link speed."""
    from .plotting import figures

    def draw(dirty_rate_pages_s, bandwidth_gbit_s):
        ds = compare(
            STRATEGY_CASES,
            list(base)
            + [
                f"workload.dirty_rate_pages_s={float(dirty_rate_pages_s)}",
                f"network.bandwidth_gbit_s={float(bandwidth_gbit_s)}",
            ],
        )
        fig = figures.compare_bars(
            ds, ["total_time", "downtime", "transferred", "postcopy_faults"], logy=["downtime"]
        )
        parts = []
        for c in ds["case"].values:
            one = ds.sel(case=c)
            parts.append(
                f"{c} "
                + (
                    f"down {figures.fmt_seconds(one['downtime'].item())}"
                    if bool(one["completed"].item())
                    else f"did not complete ({figures.abandoned_pause(one)})"
                )
            )
        return View(
            ds,
            fig,
            f"{dirty_rate_pages_s:,.0f} pages/s on {bandwidth_gbit_s:.3g} Gbit/s: " + "; ".join(parts),
        )

    return explore(
        draw,
        [
            Control("dirty_rate_pages_s", "writes (pages/s)", 80_000.0, "log", 3, 5.3, 0.1),
            Control("bandwidth_gbit_s", "link (Gbit/s)", 1.0, "log", -0.3, 1.5, 0.1),
        ],
        smoke,
    )


# -- NUMA and copy errors (notebook 04) ---------------------------------------------------------
def numa_overrides(
    memory_gib: float,
    dst_nodes: int,
    dst_node_gib: float,
    src_nodes: int = 2,
    src_node_gib: float = 64.0,
    base: Sequence[str] = (),
) -> list[str]:
    """Overrides for a VM of ``memory_gib`` moving from ``src_nodes`` x ``src_node_gib`` to a
    host of ``dst_nodes`` x ``dst_node_gib`` (an idle guest on the fluid engine: the NUMA
    outcome does not depend on the copy)."""
    return list(base) + [
        "engine=fluid",
        "workload=idle",
        "network=10gbe",
        "policy.timeout_s=3600",
        f"vm.memory_gib={float(memory_gib)}",
        f"host.src_numa_nodes={int(src_nodes)}",
        f"host.numa_node_gib={float(src_node_gib)}",
        f"host.dst_numa_nodes={int(dst_nodes)}",
        f"host.dst_numa_node_gib={float(dst_node_gib)}",
    ]


def numa_case(
    memory_gib: float = 96.0,
    dst_nodes: int = 4,
    dst_node_gib: float = 32.0,
    src_nodes: int = 2,
    src_node_gib: float = 64.0,
    base: Sequence[str] = (),
    curve: Sequence[float] | None = None,
) -> xr.Dataset:
    """One migration's NUMA outcome plus the curve over destination node sizes.

    Returns the simulated Dataset (``numa_compatible``, ``numa_penalty``…) with the layout
    (``vnuma_nodes``, ``vnuma_node_gib``, ``remote_share``) and a variable ``curve_penalty``
    (dim ``dst_node_gib``: the slowdown after the move for other destination node sizes,
    same number of nodes)."""
    from dataclasses import replace

    from .api import simulate
    from .model.numa import numa_effect

    ov = numa_overrides(memory_gib, dst_nodes, dst_node_gib, src_nodes, src_node_gib, base)
    ds = simulate(ov)
    host = build_scenario(compose(ov)).host
    eff = numa_effect(float(memory_gib), host)
    sizes = np.asarray(
        curve if curve is not None else sorted({*np.arange(8.0, 264.0, 8.0).tolist(), float(dst_node_gib)}),
        float,
    )
    pen, share = [], []
    for size in sizes:
        try:
            e = numa_effect(float(memory_gib), replace(host, dst_numa_node_gib=float(size)))
            pen.append(e.penalty)
            share.append(e.remote_share)
        except Exception:  # noqa: BLE001 — a destination too small for the VM: no point
            pen.append(np.nan)
            share.append(np.nan)
    ds = ds.assign(
        vnuma_nodes=xr.DataArray(eff.vnuma_nodes, attrs={"units": "1", "long_name": "vNUMA nodes"}),
        vnuma_node_gib=xr.DataArray(
            float(memory_gib) / eff.vnuma_nodes, attrs={"units": "GiB", "long_name": "memory per vNUMA node"}
        ),
        remote_share=xr.DataArray(
            eff.remote_share, attrs={"units": "1", "long_name": "remote share of accesses"}
        ),
        curve_penalty=xr.DataArray(
            np.asarray(pen),
            dims=("dst_node_gib",),
            coords={
                "dst_node_gib": (
                    "dst_node_gib",
                    sizes,
                    {"units": "GiB", "long_name": "destination node size"},
                )
            },
            attrs={"units": "1", "long_name": "slowdown after the move"},
        ),
    )
    ds.attrs.update(
        lmt_src_nodes=int(src_nodes),
        lmt_src_node_gib=float(src_node_gib),
        lmt_dst_nodes=int(dst_nodes),
        lmt_dst_node_gib=float(dst_node_gib),
    )
    return ds


def one_big_node(base: Sequence[str] = ()) -> xr.Dataset:
    """Notebook 04's exercise 2: :func:`numa_case` at :data:`ONE_BIG_NODE`."""
    return numa_case(**ONE_BIG_NODE, base=base)


def explore_numa(base: Sequence[str] = (), smoke: bool = False) -> xr.Dataset:
    """Notebook 04's NUMA explorer: VM size and the destination's nodes."""
    from .plotting import figures

    def draw(memory_gib, dst_nodes, dst_node_gib):
        if memory_gib > dst_nodes * dst_node_gib:
            from .errors import ConfigError

            raise ConfigError(
                "vm.memory_gib",
                memory_gib,
                "",
                message=(
                    f"a {memory_gib:g} GiB VM does not fit on a destination of {dst_nodes} x "
                    f"{dst_node_gib:g} GiB: give it more or larger nodes"
                ),
            )
        ds = numa_case(memory_gib, dst_nodes, dst_node_gib, base=base)
        fig = figures.numa_placement(ds)
        return View(ds, fig, numa_text(ds))

    return explore(
        draw,
        [
            Control("memory_gib", "VM memory (GiB)", NUMA_DEFAULTS["memory_gib"], "float", 8, 128, 8),
            Control("dst_nodes", "destination NUMA nodes", NUMA_DEFAULTS["dst_nodes"], "int", 1, 8, 1),
            Control(
                "dst_node_gib",
                "memory per destination node (GiB)",
                NUMA_DEFAULTS["dst_node_gib"],
                "float",
                16,
                256,
                16,
            ),
        ],
        smoke,
    )


def numa_text(ds: xr.Dataset) -> str:
    v = int(ds["vnuma_nodes"].item())
    s = float(ds["vnuma_node_gib"].item())
    comp = bool(ds["numa_compatible"].item())
    return (
        f"{float(ds['memory'].item()) / 2**30:g} GiB VM with {v} vNUMA node{'s' if v != 1 else ''} "
        f"of {s:.3g} GiB -> {ds.attrs['lmt_dst_nodes']} x {ds.attrs['lmt_dst_node_gib']:g} GiB: "
        f"layout {'compatible' if comp else 'NOT compatible'}, "
        f"{float(ds['remote_share'].item()):.0%} of accesses remote, "
        f"memory-bound work {float(ds['numa_penalty'].item()):.0%} slower after the move"
    )


def copy_error_runs(
    base: Sequence[str] = (),
    bit_error_rate: float = 1e-15,
    network: str = "10gbe",
    spare_cores: float | None = None,
) -> dict[str, list[str]]:
    """The overrides of :func:`copy_errors`' four cases (:data:`PROTECTION_CASES`) by name."""
    extra = [f"host.bit_error_rate={float(bit_error_rate)}", f"network={network}"]
    if spare_cores is not None:
        extra.append(f"host.spare_cores={float(spare_cores)}")
    return {k: ["engine=fluid", *base, *extra, *v] for k, v in PROTECTION_CASES.items()}


def copy_error_exercise(exercise: str, base: Sequence[str] = ()) -> xr.Dataset:
    """Notebook 04's copy-error exercise ``exercise`` (:data:`COPY_ERROR_EXERCISES`: its guest,
    then ``base``)."""
    guest_, kw = COPY_ERROR_EXERCISES[exercise]
    return copy_errors([*guest_, *base], **kw)


def copy_errors(
    base: Sequence[str] = (),
    bit_error_rate: float = 1e-15,
    network: str = "10gbe",
    spare_cores: float | None = None,
) -> xr.Dataset:
    """The four protections of :data:`PROTECTION_CASES` for one migration (dim ``case``):
    ``corruption_probability``, ``retransmitted``, ``checksum_cpu_time``, ``total_time``."""
    ds = compare(copy_error_runs(base, bit_error_rate, network, spare_cores))
    ds.attrs.update(lmt_bit_error_rate=float(bit_error_rate), lmt_network=network)
    return ds


def explore_copy_errors(base: Sequence[str] = (), smoke: bool = False) -> xr.Dataset:
    """Notebook 04's copy-error explorer: bit error rate, link, spare cores for hashing."""
    from .plotting import figures

    def draw(bit_error_rate, network, spare_cores):
        ds = copy_errors(base, bit_error_rate, network, spare_cores)
        fig = figures.copy_errors(ds)
        parts = [
            f"{c}: {_one_in(float(p))}"
            for c, p in zip(ds["case"].values, ds["corruption_probability"].values)
        ]
        t = ds["total_time"]
        return View(
            ds,
            fig,
            f"bit error rate {bit_error_rate:.0e}, {network}: "
            + "; ".join(parts)
            + f". Checksums cost {float(t.sel(case='ECC + checksums') / t.sel(case='ECC')) - 1:+.0%} time",
        )

    d = COPY_ERROR_DEFAULTS
    return explore(
        draw,
        [
            Control(
                "bit_error_rate", "bit error rate (per bit moved)", d["bit_error_rate"], "log", -18, -9, 1
            ),
            Control(
                "network", "link", d["network"], "choice", options=["1gbe", "10gbe", "25gbe", "100gbe_rdma"]
            ),
            Control("spare_cores", "spare cores for hashing", d["spare_cores"], "float", 1, 8, 1),
        ],
        smoke,
    )


def _one_in(p: float) -> str:
    """0.0001 -> '1 migration in 10,000 corrupts a page'."""
    if not p > 0:
        return "never (below 1e-300)"
    n = 1.0 / p
    if n < 1.5:
        return "almost every migration corrupts a page"
    return f"1 migration in {n:,.0f}" if n < 1e7 else f"1 migration in 10^{math.log10(n):.0f}"


# -- comparisons --------------------------------------------------------------------------------
def compare(
    cases: Mapping[str, Sequence[str]], base: Sequence[str] = (), variables: Sequence[str] | None = None
) -> xr.Dataset:
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


def table(ds: xr.Dataset, variables: Sequence[str]):
    """A readable table of a :func:`compare` result: one row per case, display units in the
    column names (``downtime (ms)``); for a case that did not complete, "did not complete"
    instead of a missing downtime, or its pause until the timeout marked "(abandoned)"."""
    import pandas as pd

    from .plotting import figures

    variables = [v for v in variables if v in ds]
    cols = {}
    done = np.asarray(ds["completed"].values, bool) if "completed" in ds else None
    for v in variables:
        vals = ds[v].values
        if v in figures.VARIABLES and ds[v].dtype.kind in "fiu":
            disp = figures.label(ds, v)
            num = np.asarray(vals, float) * figures.scale(ds, v)
            col = [("—" if not np.isfinite(x) else f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}") for x in num]
            if v in ("rounds", "postcopy_faults"):
                col = [f"{x:,.0f}" for x in num]
            if v == "downtime" and done is not None:
                col = [
                    c if d else "did not complete" if not np.isfinite(x) else f"{c} (abandoned)"
                    for c, d, x in zip(col, done, num)
                ]
            cols[disp] = col
        elif ds[v].dtype == bool:
            cols[figures.label(ds, v) if v in figures.VARIABLES else v] = ["yes" if x else "no" for x in vals]
        else:
            cols[v.replace("_", " ")] = [str(x) for x in vals]
    return pd.DataFrame(cols, index=pd.Index([str(c) for c in ds["case"].values], name="case"))


def rounds_table(ds: xr.Dataset):
    """One migration's rounds as a readable table (display units, whole numbers)."""
    import pandas as pd

    from .records import ROUND_KINDS

    kinds = np.asarray(ds["round_kind"].values)
    ok = kinds >= 0
    return pd.DataFrame(
        {
            "kind": [ROUND_KINDS[int(k)] for k in kinds[ok]],
            "dirty pages at the sync": [f"{x:,.0f}" for x in np.asarray(ds["round_dirty_pages"].values)[ok]],
            "data sent (MiB)": [f"{x / 2**20:,.1f}" for x in np.asarray(ds["round_bytes"].values)[ok]],
            "duration (s)": [f"{x:.3f}" for x in np.asarray(ds["round_duration"].values)[ok]],
        },
        index=pd.Index(np.asarray(ds["round"].values)[ok], name="round"),
    )


# -- exercises -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Exercise:
    """One self-checked exercise: ``truth(*data)`` is the right answer, ``kind`` how an
    answer is compared (``number``: within ``tolerance`` relative — or absolute with
    ``absolute=True``; ``factor``: within a factor ``tolerance``; ``exact``: equal), ``hint``
    what a wrong answer is told, ``explain(truth, *data)`` what a right one is told,
    ``reveal(*data)`` a figure shown once answered."""

    id: str
    answer: str
    truth: Callable
    kind: str = "exact"
    tolerance: float = 0.0
    absolute: bool = False
    hint: str = ""
    explain: Callable | None = None
    reveal: Callable | None = None

    def correct(self, answer, truth) -> bool:
        if self.kind == "exact":
            if isinstance(truth, bool):
                return isinstance(answer, (bool, np.bool_)) and bool(answer) == truth
            return str(answer).strip().lower() == str(truth).strip().lower()
        try:
            a, t = float(answer), float(truth)
        except (TypeError, ValueError):
            return False
        if self.kind == "factor":
            return a > 0 and t > 0 and max(a / t, t / a) <= self.tolerance
        if self.absolute:
            return abs(a - t) <= self.tolerance
        return abs(a - t) <= self.tolerance * abs(t)


@dataclass
class CheckResult:
    """What :func:`check` shows: ✓, ✗ with a hint, or "not answered yet"."""

    exercise: str
    answer_name: str
    ok: bool | None
    message: str

    @property
    def symbol(self) -> str:
        return {True: "✓", False: "✗", None: "…"}[self.ok]

    def text(self) -> str:
        return f"{self.symbol} Exercise {self.exercise}: {self.message}"

    def __repr__(self) -> str:
        return self.text()

    def _repr_mimebundle_(self, include=None, exclude=None):
        colour = {True: "#1a7f37", False: "#b35900", None: "#57606a"}[self.ok]
        state = {True: "ok", False: "wrong", None: "unanswered"}[self.ok]
        body = (
            f'<div class="lmt-check lmt-check-{state}" style="border-left:4px solid {colour};'
            f'padding:4px 10px;margin:4px 0"><b style="color:{colour}">{self.symbol} Exercise '
            f"{html.escape(self.exercise)}</b> — {html.escape(self.message)}</div>"
        )
        meta = {"lmt_check": {"exercise": self.exercise, "state": state}}
        return {"text/html": body, "text/plain": self.text()}, {"text/html": meta, "text/plain": meta}


def _cases_where(ds, mask) -> str:
    names = [str(c) for c, m in zip(ds["case"].values, np.asarray(mask, bool)) if m]
    return names[0] if len(names) == 1 else ", ".join(names) if names else "none"


def _longest_downtime(ds) -> str:
    done = np.asarray(ds["completed"].values, bool)
    down = np.where(done, np.asarray(ds["downtime"].values, float), -np.inf)
    return str(ds["case"].values[int(np.argmax(down))])


def _reveal_precopy(ds):
    from .plotting import figures

    return figures.precopy_explorer(ds)


def _speedup(idle):
    return float(idle.total_time.sel(case="1 GbE") / idle.total_time.sel(case="10 GbE"))


def _shared_ratio(ds):
    return float(ds.total_time.sel(case="10 GbE shared") / ds.total_time.sel(case="10 GbE dedicated"))


def _page_count(ds) -> float:
    """Pages a one-migration Dataset's migration tracks, as its ``round_pages`` count them (page
    size from its recorded config; 4 KiB ones for huge pages, :func:`~.model.vm.tracked_page_kib`)."""
    import yaml

    from .model.vm import tracked_page_kib

    try:
        kib = float(tracked_page_kib(int(yaml.safe_load(ds.attrs["lmt_config"])["vm"]["page_size_kib"])))
    except (KeyError, TypeError, ValueError, yaml.YAMLError):
        kib = 4.0
    return float(ds.memory) / (kib * 1024)


EXERCISES: dict[str, Exercise] = {
    e.id: e
    for e in [
        # 00 · live migration basics
        Exercise(
            "00.1",
            "answer_round0_share",
            lambda ds: float(ds.round_pages[0]) / _page_count(ds),
            "number",
            0.05,
            absolute=True,
            hint="look at the first bar and the first point of the dirty set, and re-read how "
            "QEMU decides to end a pass",
            explain=lambda t, ds: (
                f"round 0 sent {t:.1%} of the {_page_count(ds):,.0f} pages: QEMU "
                "stopped the pass once what was left fitted the downtime limit"
            ),
        ),
        Exercise(
            "00.2",
            "answer_completes",
            lambda hot: bool(hot.completed),
            hint="compare the write rate with the pages the link sends per second: can a round "
            "ever send the pages dirtied during it?",
            explain=lambda t, hot: (
                "it completes"
                if t
                else f"it never completes (stop: {hot.stop_reason.item()}): the "
                "dirty set never shrinks below what one round can send"
            ),
            reveal=_reveal_precopy,
        ),
        Exercise(
            "00.3",
            "answer_downtime_ms",
            lambda ds: float(ds.downtime) * 1000,
            "number",
            0.05,
            hint="the downtime is in the explorer's title and in the Result line (ms)",
            explain=lambda t, ds: (
                f"downtime {t:.0f} ms — QEMU aims at its 300 ms limit; the device "
                "state sent in the pause adds a little"
            ),
        ),
        # 01 · the network matters
        Exercise(
            "01.1",
            "answer_speedup",
            _speedup,
            "number",
            0.05,
            hint="an idle guest: one pass, time = memory ÷ payload rate",
            explain=lambda t, idle: (
                f"speed-up {t:.2f}: an idle VM's migration is one pass, so time scales with the link"
            ),
        ),
        Exercise(
            "01.2",
            "answer_fails",
            lambda ds: _cases_where(ds, ~np.asarray(ds.completed.values, bool)),
            hint="which link has less bandwidth left for the migration than the guest's writes need?",
            explain=lambda t, ds: (
                f"{t} does not complete: half of 1 GbE leaves about 14,000 "
                "pages/s, fewer than the guest dirties"
            ),
        ),
        Exercise(
            "01.3",
            "answer_much_slower",
            lambda ds: _shared_ratio(ds) > 1.5,
            hint="half the link gone means each round takes twice as long — and more pages get "
            "dirtied during it",
            explain=lambda t, ds: f"shared / dedicated = {_shared_ratio(ds):.2f}",
        ),
        # 02 · VMware vs Hyper-V
        Exercise(
            "02.1",
            "answer_throttles",
            lambda ds: _cases_where(ds, ds.throttle_max.values > 0),
            hint="SDPS stands for Stun During Page Send",
            explain=lambda t, ds: f"{t}: up to {float(ds.throttle_max.sel(case=t)):.0%} of vCPU time stunned",
        ),
        Exercise(
            "02.2",
            "answer_passes",
            lambda ds: int(ds.rounds.sel(case="Hyper-V 2008 R2")),
            "number",
            0.0,
            absolute=True,
            hint="re-read what the text says about Hyper-V's pass cap",
            explain=lambda t, ds: (
                f"{t} passes, then the VM is paused by the cap "
                f"(stop: {ds.stop_reason.sel(case='Hyper-V 2008 R2').item()})"
            ),
        ),
        Exercise(
            "02.3",
            "answer_meets_goal",
            lambda ds: _cases_where(
                ds.sel(case=["VMware (SDPS)", "VMware (no SDPS)"]),
                ds.downtime.sel(case=["VMware (SDPS)", "VMware (no SDPS)"]).values <= 0.5,
            ),
            hint="look at the downtime bars (log scale) against 500 ms",
            explain=lambda t, ds: (
                "downtime: "
                + ", ".join(f"{c} {float(ds.downtime.sel(case=c)) * 1000:.0f} ms" for c in ds.case.values)
            ),
        ),
        # 03 · post-copy and hybrid
        Exercise(
            "03.1",
            "answer_ratio",
            lambda ds: float(ds.transferred.sel(case="post-copy") / ds.memory.sel(case="post-copy")),
            "number",
            0.02,
            absolute=True,
            hint="how many times does each page cross the network in post-copy?",
            explain=lambda t, ds: (
                f"post-copy sent {t:.3f} x memory (page headers and device state make the rest)"
            ),
        ),
        Exercise(
            "03.2",
            "answer_longest",
            _longest_downtime,
            hint="which strategy keeps the VM paused while it copies?",
            explain=lambda t, ds: f"{t}: the VM is paused for the whole copy",
        ),
        Exercise(
            "03.3",
            "answer_fewer_faults",
            lambda ds: (
                float(ds.postcopy_faults.sel(case="hybrid")) < float(ds.postcopy_faults.sel(case="post-copy"))
            ),
            hint="what is already on the destination when hybrid switches to post-copy?",
            explain=lambda t, ds: (
                f"faults: hybrid {float(ds.postcopy_faults.sel(case='hybrid')):,.0f}, "
                f"post-copy {float(ds.postcopy_faults.sel(case='post-copy')):,.0f}"
            ),
        ),
        # 04 · NUMA and ECC
        Exercise(
            "04.1",
            "answer_remote_share",
            lambda ds: float(ds.remote_share),
            "number",
            0.03,
            absolute=True,
            hint="each vNUMA node keeps its size; how much of it fits on one destination node?",
            explain=lambda t, ds: (
                f"{t:.0%} of the accesses are remote: "
                f"{float(ds.vnuma_node_gib):g} GiB per vNUMA node, "
                f"{ds.attrs['lmt_dst_node_gib']:g} GiB per destination node"
            ),
        ),
        Exercise(
            "04.2",
            "answer_compatible",
            lambda ds: bool(ds.numa_compatible),
            hint="count the vNUMA nodes and the destination's nodes",
            explain=lambda t, ds: (
                f"{'compatible' if t else 'not compatible'}: "
                f"{int(ds.vnuma_nodes)} vNUMA nodes on {ds.attrs['lmt_dst_nodes']} "
                f"node(s); slowdown {float(ds.numa_penalty):.0%}"
            ),
        ),
        Exercise(
            "04.3",
            "answer_one_in",
            lambda ds: 1.0 / float(ds.corruption_probability.sel(case="no ECC")),
            "factor",
            2.0,
            hint="bits moved ≈ 8 x bytes sent; expected flips = bits x bit error rate",
            explain=lambda t, ds: (
                f"about 1 migration in {t:,.0f} corrupts a page without ECC "
                f"(with ECC: {_one_in(float(ds.corruption_probability.sel(case='ECC')))})"
            ),
        ),
        Exercise(
            "04.4",
            "answer_slower",
            lambda ds: (
                float(ds.total_time.sel(case="ECC + checksums")) > 1.01 * float(ds.total_time.sel(case="ECC"))
            ),
            hint="compare the hashing throughput (GiB/s per core x spare cores) with the link",
            explain=lambda t, ds: (
                "total time: "
                + ", ".join(
                    f"{c} {float(ds.total_time.sel(case=c)):.2f} s" for c in ("ECC", "ECC + checksums")
                )
            ),
        ),
    ]
}


def check(exercise: str, answer, *data) -> CheckResult:
    """Check ``answer`` to exercise ``exercise`` (e.g. ``"00.1"``) against the ``data`` the
    notebook computed; returns what the cell shows.  ``None`` means not answered yet."""
    ex = EXERCISES[exercise]
    if answer is None:
        return CheckResult(
            exercise,
            ex.answer,
            None,
            f"not answered yet — set {ex.answer} in the cell above and run both cells again",
        )
    truth = ex.truth(*data)
    ok = ex.correct(answer, truth)
    if ex.reveal is not None:
        _show_figure(ex.reveal(*data), metadata={"lmt_reveal": exercise})
    if ok:
        msg = "correct — " + (ex.explain(truth, *data) if ex.explain else str(truth))
    else:
        msg = f"not quite ({ex.answer} = {answer!r}). Hint: {ex.hint}"
    return CheckResult(exercise, ex.answer, ok, msg)


def solution(exercise: str, *data):
    """The right answer to ``exercise`` computed from ``data`` (for teachers and tests)."""
    return EXERCISES[exercise].truth(*data)
