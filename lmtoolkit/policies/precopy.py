"""Generic iterative pre-copy: full passes until a stop rule holds.

This is the shape every pre-copy hypervisor shares (Clark et al., "Live Migration of
Virtual Machines", NSDI 2005, §3): push all pages, then iteratively push the pages dirtied
during the previous pass, then stop the VM and copy the rest.  Concrete policies
(:mod:`.qemu`, :mod:`.xen`, :mod:`.vmware`, :mod:`.hyperv`) add their own stop rules.

Two layers:

* :class:`IterativePrecopy` — the pass logic without parameters: passes counted, time to
  send what is left, "remaining fits the goal" convergence, a pass cap, the transmit/dirty
  ratio of the last pass and the guest throttle that would bring it to a target.  Vendor
  policies whose settings have their own names (VMware ``switchover_goal_ms``, Hyper-V
  ``max_passes``) plug into it through :meth:`~IterativePrecopy.switchover_goal_s` and
  :meth:`~IterativePrecopy.pass_cap`.
* :class:`PrecopyPolicy` — the generic policy with ``downtime_limit_ms`` and ``max_rounds``;
  QEMU-like and Xen-like policies (and user policies, see ``examples/``) extend it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, check_range
from ..records import REASON_CODE
from .base import Policy, bitmap_empty


@dataclass(frozen=True)
class IterativePrecopy(Policy, register=False):
    """Pass-based pre-copy rules shared by the generic, VMware-like and Hyper-V-like policies."""

    name = "iterative"

    # -- hooks for subclasses ----------------------------------------------------------------
    def switchover_goal_s(self):
        """Switch over when the remaining pages can be sent within this time (s)."""
        raise NotImplementedError

    def pass_cap(self):
        """Pre-copy passes after which the VM is paused whatever is left (inf = none)."""
        return np.inf

    # -- shared rules ----------------------------------------------------------------------
    def passes_done(self, st):
        """Pre-copy passes completed (syncs after the initial one)."""
        return st.round - 1

    def remaining_time_s(self, st, ctx):
        """Time to send the bitmap's pages at the measured throughput (s).

        The measured throughput ``bw_est`` is in wire bytes per second, so the pages are
        counted at their wire size in the current round (compressed, delta-encoded, …);
        CPU-bound transports are covered because ``bw_est`` was measured with them.
        """
        per_page = self.nonzero_wire_bytes(st, ctx)
        return st.pending * per_page / np.maximum(st.bw_est, 1e-12)

    def converged(self, st, ctx):
        """The remaining pages fit the switchover goal — after the first full pass.

        Every iterative pre-copy first pushes all pages while the guest runs, whatever the
        guest's size: Clark et al. (NSDI 2005, §3.1: "during the first iteration, all pages
        are transferred"); vMotion: "Copy each memory page from the source to the destination
        via the vMotion network. This is known as preCopy. Perform another pass over the VM's
        memory, copying any pages that changed" (VMware vSphere training material, as quoted
        on tech-gens.blogspot.com, "How vMotion works", 2014); Hyper-V: "The initial memory
        state is copied from the source VM to the target VM over the live migration network
        ... This iterative process continues until the number of pages is relatively small"
        (Microsoft's failover-cluster live-migration description, experts123.com).  So a
        guest that would fit the goal whole is still copied live once (before: paused at
        the start, all its memory sent as downtime).  QEMU's rule differs (it checks inside
        the first pass, :class:`~.qemu.QemuPolicy`)."""
        fits = self.remaining_time_s(st, ctx) <= self.switchover_goal_s()
        return (fits & (self.passes_done(st) >= 1)) | bitmap_empty(st.pending)

    def convergence_margin_pages(self, st, ctx):
        per_page = self.nonzero_wire_bytes(st, ctx)
        return st.pending - self.switchover_goal_s() * np.maximum(st.bw_est, 1e-12) / per_page

    def forced(self, st, ctx):
        return np.where(self.passes_done(st) >= self.pass_cap(), REASON_CODE["max_rounds"], 0)

    def steady_horizon(self, st, ctx, phase_s, phase_bytes):
        """Fluid fast-forward: never skip past the pass cap (nor the timeout)."""
        h = super().steady_horizon(st, ctx, phase_s, phase_bytes)
        return np.minimum(h, np.maximum(self.pass_cap() - self.passes_done(st), 0.0))

    def transmit_dirty_ratio(self, st):
        """Pages sent in the last pass per page dirtied during it (inf when nothing was dirtied).

        For a full pass of ``P`` pages at ``r`` pages/s while the guest dirties ``d`` distinct
        pages/s this is ``(P) / (d P / r) = r / d``: the transmit-to-dirty *rate* ratio.
        """
        return np.where(st.dirty_new > 0, st.phase_pages / np.maximum(st.dirty_new, 1e-300), np.inf)

    def throttle_for_ratio(self, st, target_ratio, max_throttle):
        """Guest throttle (0..``max_throttle``) that would bring the transmit/dirty ratio of the
        last pass to ``target_ratio``, assuming the dirty rate scales with guest speed
        (a proportional controller on speed; it also relaxes when the ratio is above target)."""
        ratio = self.transmit_dirty_ratio(st)
        speed = np.where(np.isfinite(ratio), st.speed * ratio / target_ratio, 1.0)
        return np.clip(1.0 - speed, 0.0, max_throttle)


@dataclass(frozen=True)
class PrecopyPolicy(IterativePrecopy):
    """Generic pre-copy: stop when the remaining pages can be sent within
    ``downtime_limit_ms`` at the measured bandwidth, or after ``max_rounds`` passes.

    Defaults: ``downtime_limit_ms`` 300, QEMU's ``downtime-limit`` (``migration/options.c``:
    ``DEFAULT_MIGRATE_SET_DOWNTIME 300``, ms); ``max_rounds`` 30, the classic Xen loop's
    "limit us to 30 times round loop" (``xc_domain_save.c``: ``DEF_MAX_ITERS 29`` live passes
    and the last; :class:`~.xen.XenPolicy` has the exact rule).  A generic baseline, not a
    hypervisor: the values are borrowed, the rule is Clark et al.'s."""

    downtime_limit_ms: float = 300.0
    max_rounds: int = 30

    name = "precopy"
    #: the largest ``downtime_limit_ms`` the hypervisor accepts (None: no bound of its own)
    DOWNTIME_LIMIT_MAX_MS = None

    def __post_init__(self):
        super().__post_init__()
        try:
            check_range(
                "downtime_limit_ms", self.downtime_limit_ms, 0, self.DOWNTIME_LIMIT_MAX_MS, lo_open=True
            )
        except ConfigError as e:
            if float(self.downtime_limit_ms) != 0.0:
                raise
            # QEMU accepts 0 (options.c: migrate_params_check): its threshold is then 0, no
            # estimate falls below it, so no sync comes before the first pass's estimate reaches
            # 0 and completion sends all the pass dirtied in the pause — a rule apart, not modelled
            raise ConfigError(
                e.key,
                e.value,
                e.allowed + " (0, which QEMU accepts: it completes after the first pass, is not modelled)",
            ) from None
        check_range("max_rounds", self.max_rounds, 1, 10**9)

    def switchover_goal_s(self):
        return self.downtime_limit_ms / 1000.0

    def pass_cap(self):
        return self.max_rounds

    def stationary(self, st):
        """The generic rules read only the bitmap, bandwidth, time and pass count."""
        return np.ones(np.shape(st.t), dtype=bool)
