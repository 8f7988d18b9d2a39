"""The paper figures: id → (function, experiment, caption, notebook, table).

``lmtk figures`` and ``notebooks/30_paper_figures.ipynb`` make every figure listed here from
its experiment's Dataset (``lmt.sweep(["experiment=<experiment>"])``, served from the sweep
cache when it exists) into ``results/figures/<id>_<slug>.{png,pdf}`` plus a ``.yaml`` sidecar.
The experiment notebook (``notebooks/20_experiment.ipynb``, run once per experiment) shows the
caption, the mean over replicates of the ``table`` variables and the figure.

Add a figure: write ``fig_<slug>(ds) -> Figure`` in :mod:`lmtoolkit.plotting.figures`, add a
:class:`FigureSpec` here (next free number), and a row to the README's figure table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import energy as E
from . import figures as F


@dataclass(frozen=True)
class FigureSpec:
    id: str  # "fig01"
    slug: str  # file stem after the id: fig01_quickstart
    function: Callable  # Dataset -> matplotlib Figure
    experiment: str  # configs/experiment/<experiment>.yaml
    caption: str
    notebook: str = "20_experiment"  # the notebook that shows it (notebooks/<notebook>.ipynb;
    #                                   the experiment notebook runs with experiment=<experiment>)
    main: bool = False  # shown as a thumbnail in the README
    #: variables the experiment notebook tabulates (mean over replicates)
    table: tuple = ("total_time", "downtime")

    @property
    def stem(self) -> str:
        return f"{self.id}_{self.slug}"


FIGURES: dict[str, FigureSpec] = {
    s.id: s
    for s in [
        FigureSpec(
            "fig01",
            "quickstart",
            F.fig_quickstart,
            "quickstart",
            "Total migration time and downtime of a 2 GiB web-server-like VM under VMware-like "
            "and Hyper-V-like live migration on 1 and 10 GbE as the guest writes faster "
            "(mean ± 1 sd over replicates).",
            table=("total_time", "downtime", "transferred"),
            main=True,
        ),
        FigureSpec(
            "fig02",
            "bandwidth_vs_dirty_rate",
            F.fig_bandwidth_vs_dirty_rate,
            "bandwidth_vs_dirty_rate",
            "QEMU-like pre-copy of an 8 GiB VM with uniform writes over link bandwidth and "
            "dirty rate: total time and downtime; × marks migrations that never complete.",
            table=("total_time", "downtime", "completed"),
            main=True,
        ),
        FigureSpec(
            "fig03",
            "vmware_vs_hyperv",
            F.fig_vmware_vs_hyperv,
            "vmware_vs_hyperv",
            "Downtime and total time of VMware-like (generic, vSphere 7) and Hyper-V-like "
            "(2012 R2, 2008 R2) policies on five workload presets, 1 and 10 GbE, 4 GiB VM.",
            table=("total_time", "downtime", "rounds"),
            main=True,
        ),
        FigureSpec(
            "fig04",
            "downtime_target",
            F.fig_downtime_target,
            "downtime_target",
            "Downtime reached and total time against QEMU's downtime-limit for a database-like "
            "8 GiB guest on 10 GbE, one line per write rate (dotted: downtime = target).",
            table=("total_time", "downtime", "rounds"),
        ),
        FigureSpec(
            "fig05",
            "auto_converge",
            F.fig_auto_converge,
            "auto_converge",
            "QEMU auto-converge off/on for an HPC-like 4 GiB guest on 1 and 10 GbE: total "
            "time, downtime and the guest slowdown that buys convergence.",
            table=("total_time", "downtime", "guest_slowdown"),
            main=True,
        ),
        FigureSpec(
            "fig06",
            "postcopy_vs_precopy",
            F.fig_postcopy_vs_precopy,
            "postcopy_vs_precopy",
            "Pre-copy (QEMU-like), post-copy, hybrid and stop-and-copy for an 8 GiB hot/cold "
            "guest on 10 GbE as the write rate grows: total time, downtime and data sent.",
            table=("total_time", "downtime", "transferred", "postcopy_faults"),
        ),
        FigureSpec(
            "fig07",
            "memory_scaling",
            F.fig_memory_scaling,
            "memory_scaling",
            "Total time and downtime from 1 to 512 GiB for a database-like guest, VMware-like vs "
            "Hyper-V-like on 10 GbE and 100 GbE RDMA (fluid engine).",
            table=("total_time", "downtime"),
        ),
        FigureSpec(
            "fig08",
            "fluid_map_100k",
            F.fig_fluid_map,
            "fluid_map_100k",
            "Total time of 100,000 QEMU-like migrations of an 8 GiB VM with uniform writes "
            "on the fluid engine: 10 link speeds × 10,000 log-spaced dirty rates; dark grey "
            "where pre-copy never completes.",
            table=("total_time", "completed"),
        ),
        FigureSpec(
            "fig09",
            "shared_network",
            F.fig_shared_network,
            "shared_network",
            "Dedicated vs shared migration link: total time and downtime of a 4 GiB "
            "vMotion-like migration against the other traffic on a 1 or 10 GbE link, for a "
            "quiet and a busy guest (fluid engine).",
            table=("total_time", "downtime"),
        ),
        FigureSpec(
            "fig10",
            "evacuation_order",
            F.fig_evacuation_order,
            "evacuation_order",
            "Evacuating a host of 24 VMs vMotion-like (4 at a time on 1 GbE, 8 on 10 GbE): "
            "makespan and mean VM completion time for each migration order.",
            table=("makespan", "total_transferred"),
        ),
        FigureSpec(
            "fig11",
            "energy_pareto",
            E.fig_energy_pareto,
            "energy_pareto",
            "Migration energy against total time and downtime for every policy on the five "
            "workload presets at 1 and 10 GbE (2 GiB VM, fluid engine, power=default); filled "
            "marks are on the Pareto front of (energy, total time, downtime) for their workload "
            "and link.",
            table=("energy_total", "total_time", "downtime", "guest_lost_cpu_s"),
        ),
    ]
}


def get(fig_id: str) -> FigureSpec:
    """A figure by id (``fig01``), number (``1``) or slug (``quickstart``)."""
    from ..errors import ConfigError

    key = str(fig_id)
    if key.isdigit():
        key = f"fig{int(key):02d}"
    if key in FIGURES:
        return FIGURES[key]
    for s in FIGURES.values():
        if key in (s.slug, s.stem):
            return s
    raise ConfigError("figure", fig_id, "one of " + ", ".join(f"{s.id} ({s.slug})" for s in FIGURES.values()))
