"""Dirty-page traces: the file format (:mod:`.format`) replayed by ``workload=trace``."""

from .format import load_trace, save_trace

__all__ = ["load_trace", "save_trace"]
