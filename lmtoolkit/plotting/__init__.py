"""Plotting: one theme (:mod:`.style`), one function per figure (:mod:`.figures`), the paper
figures' registry (:mod:`.registry`) and ``lmtk figures`` (:mod:`.make`).  Plotting never
simulates: figure functions take Datasets; :mod:`.make` asks the sweep (cache) for them."""
from . import style  # noqa: F401

__all__ = ["style"]
