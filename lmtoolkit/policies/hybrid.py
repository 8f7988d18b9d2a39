"""Hybrid: a few pre-copy passes, then post-copy.

QEMU supports "postcopy after precopy": with the ``postcopy-ram`` capability set, pre-copy
runs as usual and ``migrate-start-postcopy`` switches to post-copy (QEMU
``docs/devel/migration/postcopy.rst``: "Postcopy can be combined with precopy … if precopy
doesn't finish in a given time the switch is made to postcopy").  libvirt's
``virsh migrate --postcopy-after-precopy`` issues the switch after the first pre-copy
iteration — hence ``precopy_passes: 1`` by default (libvirt option; not in QEMU itself).
Hines & Gopalan (VEE 2009) discuss the same combination as a hybrid.

Rules: the QEMU-like pre-copy of :class:`~.qemu.QemuPolicy` (its switchover test, bandwidth
cap, auto-converge, XBZRLE, multifd; a pass ends at a dirty-bitmap sync), but after
``precopy_passes`` syncs the migration switches to post-copy (reason ``precopy_done``) with
the post-copy phase of :class:`~.postcopy.PostcopyPhase`.  If pre-copy converges first (the
rest fits ``downtime_limit_ms``) it completes as plain pre-copy, as QEMU does when the
remaining size falls below the threshold before the switch command arrives.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import check_range
from ..records import REASON_CODE
from .postcopy import PostcopyPhase
from .qemu import QemuPolicy


@dataclass(frozen=True)
class HybridPolicy(PostcopyPhase, QemuPolicy):
    """Hybrid: ``precopy_passes`` QEMU-like pre-copy passes (default 1), then post-copy."""

    precopy_passes: int = 1

    name = "hybrid"
    stop_reasons = ("precopy_done",)

    def __post_init__(self):
        super().__post_init__()
        check_range("precopy_passes", self.precopy_passes, 0, 10 ** 6)

    def forced(self, st, ctx):
        code = super().forced(st, ctx)
        done = self.passes_done(st) >= self.precopy_passes
        return np.where(done, REASON_CODE["precopy_done"], code)

    def steady_horizon(self, st, ctx, phase_s, phase_bytes):
        h = super().steady_horizon(st, ctx, phase_s, phase_bytes)
        return np.minimum(h, np.maximum(self.precopy_passes - self.passes_done(st), 0.0))
