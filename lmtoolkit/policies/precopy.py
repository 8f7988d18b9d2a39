"""Generic iterative pre-copy: full passes until a stop rule holds.

This is the shape every pre-copy hypervisor shares (Clark et al., "Live Migration of
Virtual Machines", NSDI 2005, §3): push all pages, then iteratively push the pages dirtied
during the previous pass, then stop the VM and copy the rest.  Concrete policies
(:mod:`.qemu`, :mod:`.xen`, :mod:`.vmware`, :mod:`.hyperv`) add their own stop rules.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import check_range
from ..records import REASON_CODE
from .base import Policy


@dataclass(frozen=True)
class PrecopyPolicy(Policy):
    """Generic pre-copy: stop when the remaining pages can be sent within
    ``downtime_limit_ms`` at the measured bandwidth, or after ``max_rounds`` passes."""

    downtime_limit_ms: float = 300.0
    max_rounds: int = 30

    name = "precopy"

    def __post_init__(self):
        super().__post_init__()
        check_range("downtime_limit_ms", self.downtime_limit_ms, 0, None, lo_open=True)
        check_range("max_rounds", self.max_rounds, 1, 10 ** 9)

    def passes_done(self, st):
        """Pre-copy passes completed (syncs after the initial one)."""
        return st.round - 1

    def remaining_time_s(self, st, ctx):
        """Time to send the bitmap's pages at the current bandwidth estimate (s)."""
        return st.pending * ctx.page_bytes / np.maximum(st.bw_est, 1e-12)

    def converged(self, st, ctx):
        return self.remaining_time_s(st, ctx) <= self.downtime_limit_ms / 1000.0

    def forced(self, st, ctx):
        return np.where(self.passes_done(st) >= self.max_rounds, REASON_CODE["max_rounds"], 0)
