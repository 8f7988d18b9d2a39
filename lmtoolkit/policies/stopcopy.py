"""Stop-and-copy: pause the VM, copy all memory, resume on the destination.

The non-live baseline (Clark et al., NSDI 2005, §2: "pure stop-and-copy"): downtime equals
total migration time, every page is sent exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..records import REASON_CODE
from .base import Policy


@dataclass(frozen=True)
class StopCopyPolicy(Policy):
    """Pause first, then copy everything: downtime = total time."""

    name = "stopcopy"
    precopy = False

    def converged(self, st, ctx):
        return np.zeros_like(st.t, dtype=bool)

    def decide(self, st, ctx):
        return np.full(np.shape(st.t), REASON_CODE["no_precopy"], dtype=int)
