"""Plotting: one theme (:mod:`.style`), one function per figure (:mod:`.figures`), the paper
figures' registry (:mod:`.registry`) and ``lmtk figures`` (:mod:`.make`).  Plotting never
simulates: figure functions take Datasets; :mod:`.make` asks the sweep (cache) for them."""

from . import style  # noqa: F401

__all__ = ["style", "figures", "energy", "registry", "make"]


def __getattr__(name):
    if name in ("figures", "energy", "registry", "make"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
