"""Real migration logs: read them, fit the guest's workload, predict what-ifs (issue 13).

* :mod:`.readers` — QMP ``query-migrate`` series, libvirt job statistics and testbed records
  -> one ``MigrationLog`` Dataset (:func:`read_log`);
* :mod:`.fit` — the simulator matched to the log's per-round trajectory (:func:`fit_log`:
  :mod:`.observations` what the log shows per round, :mod:`.trajectory` the same from a
  simulation, :mod:`.objective` parameters and residuals, :mod:`.search` the optimiser,
  :mod:`.uncertainty` bootstrap and profile likelihood), written as a config file ``lmtk run``
  can use (:mod:`.fitfile`: :func:`write_fit`);
* :mod:`.whatif` — the fitted guest under other settings, with bootstrap bands (:func:`whatif`);
* :mod:`.plot` — observed vs fitted trajectory and the what-if table (:func:`plot.fig_whatif`);
* :mod:`.validate` — ``lmtk validate whatif``: fit one run of a family, predict the others;
* :mod:`.cli` — ``lmtk fit`` and ``lmtk whatif``.
"""

from .readers import MigrationLog, read_log

__all__ = ["read_log", "MigrationLog"]

#: submodules loaded on first use (``lmtoolkit.logs.fit.fit_log`` …)
_LAZY = (
    "readers",
    "observations",
    "trajectory",
    "objective",
    "search",
    "uncertainty",
    "fit",
    "fitfile",
    "whatif",
    "plot",
    "validate",
    "cli",
)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
