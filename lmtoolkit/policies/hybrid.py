"""Hybrid: a few pre-copy passes, then post-copy.

QEMU supports "postcopy after precopy": with the ``postcopy-ram`` capability set, pre-copy
runs as usual and ``migrate-start-postcopy`` switches to post-copy (QEMU
``docs/devel/migration/postcopy.rst``: "Postcopy can be combined with precopy … if precopy
doesn't finish in a given time the switch is made to postcopy").  libvirt's
``virsh migrate --postcopy-after-precopy`` issues the switch after the first pre-copy
iteration — hence ``precopy_passes: 1`` by default (libvirt option; not in QEMU itself).
Hines & Gopalan (VEE 2009) discuss the same combination as a hybrid.

Rules: the QEMU-like pre-copy of :class:`~.qemu.QemuPolicy` (its switchover test, bandwidth
cap, auto-converge, XBZRLE, multifd; a pass ends at a dirty-bitmap sync), but the migration
switches to post-copy (reason ``precopy_done``) with the post-copy phase of
:class:`~.postcopy.PostcopyPhase` — over the one main channel whatever ``multifd_channels``
(``ram.c: ram_save_target_page``, see :mod:`.postcopy`), zero pages then sent whole where
the multifd channels scan for them (:meth:`HybridPolicy.postcopy_zero_pages`):

* after ``precopy_passes`` syncs (the libvirt way, above), or
* ``postcopy_after_s`` seconds after the start: a user or tool issues
  ``migrate-start-postcopy`` at a time.  ``migration.c: qmp_migrate_start_postcopy`` only
  sets ``start_postcopy``; ``migration_iteration_run`` acts on it at its next check (between
  iterations: every ``MAX_WAIT`` 50 ms, or 100 ms when ``max-bandwidth`` binds at most
  half the line, :meth:`QemuPolicy.check_period_s`) when the data
  that must go by pre-copy fits the threshold (with ``postcopy-ram`` all RAM may go by
  post-copy), and ``postcopy_start`` syncs the bitmap once more
  (``ram_postcopy_send_discard_bitmap`` → ``migration_bitmap_sync``).  Here the phase running
  at ``postcopy_after_s`` ends at that check (the first strictly after it) and the switch
  follows its sync, which is ``postcopy_start``'s: QEMU's ``dirty-sync-count`` is then the
  setup sync plus ``rounds``.

Whichever comes first; ``precopy_passes`` left null is 1 without ``postcopy_after_s`` and no
pass limit with it.  If pre-copy converges first (the rest fits ``downtime_limit_ms``) it
completes as plain pre-copy, as QEMU does when the remaining size falls below the threshold
before the switch command arrives.  At a check where both hold — the time has come and the rest
fits — the release decides (:meth:`HybridPolicy.decide`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, check_range
from ..records import REASON_CODE
from .base import none_to
from .postcopy import PostcopyPhase
from .qemu import QemuPolicy, released_since

#: QEMU release that accepts postcopy-ram together with multifd (refused up to 10.0, read in
#: 10.0.13's options.c; accepted in 10.1.0's)
POSTCOPY_MULTIFD_SINCE = (10, 1)
#: QEMU release whose ``migration_iteration_run`` asks "switch to post-copy now?" before "can
#: pre-copy complete?" (commit 7aaa1fc072, June 2025; read in 10.0.0 and 10.1.0)
POSTCOPY_BEFORE_COMPLETION_SINCE = (10, 1)


@dataclass(frozen=True)
class HybridPolicy(PostcopyPhase, QemuPolicy):
    """Hybrid: QEMU-like pre-copy passes (default 1, or until ``postcopy_after_s``), then post-copy."""

    precopy_passes: int | None = None  # syncs before the switch; null = 1 (none with postcopy_after_s)
    postcopy_after_s: float | None = None  # migrate-start-postcopy at this time (s); null = by passes only

    name = "hybrid"
    stop_reasons = ("precopy_done",)

    def __post_init__(self):
        if self.precopy_passes is None:
            object.__setattr__(self, "precopy_passes", 1 if self.postcopy_after_s is None else 10**6)
        super().__post_init__()
        check_range("precopy_passes", self.precopy_passes, 0, 10**6)
        old = ~released_since(self.qemu_version, POSTCOPY_MULTIFD_SINCE)
        if np.any((np.asarray(self.multifd_channels) > 0) & old):
            # options.c, migrate_caps_check (8.2.2, 9.2.1, 10.0.13): "Postcopy is not yet
            # compatible with multifd"
            raise ConfigError(
                "multifd_channels",
                self.multifd_channels,
                "",
                message=(
                    f"multifd_channels={self.multifd_channels} with post-copy: QEMU "
                    f"{self.qemu_version} refuses postcopy-ram with multifd (options.c, "
                    '"Postcopy is not yet compatible with multifd"; allowed from '
                    f"{POSTCOPY_MULTIFD_SINCE[0]}.{POSTCOPY_MULTIFD_SINCE[1]}): multifd_channels=0 or "
                    "qemu_version=10.1"
                ),
            )
        if self.postcopy_after_s is not None:
            check_range("postcopy_after_s", self.postcopy_after_s, 0, None)

    def postcopy_zero_pages(self):
        """With multifd on, post-copy sends a zero page whole: ``ram.c: ram_save_target_page``
        looks for zero pages itself (``save_zero_page``) only ``if (!migrate_multifd() ||
        migrate_zero_page_detection() == ZERO_PAGE_DETECTION_LEGACY)``, leaving them to the
        multifd threads otherwise (``multifd-nocomp.c``: ``multifd_send_zero_page_detect``), and
        in post-copy the page then goes by ``ram_save_page`` → ``save_normal_page``, which does
        not look (10.1.0; ``zero-page-detection`` defaults to ``multifd``, ``options.c``).  So
        post-copy finds zero pages where pre-copy's main thread would (multifd off, or
        ``zero_page_detection=legacy``), and never with ``none``: :meth:`detects_zero_pages`
        where the channels do not scan (:meth:`~.qemu.QemuPolicy.multifd_scans`)."""
        return np.asarray(self.detects_zero_pages) & ~self.multifd_scans()

    def decide(self, st, ctx):
        """As :meth:`QemuPolicy.decide`, but at a check where a time-triggered switch is due
        (``postcopy_after_s``: ``start_postcopy`` was set before it) *and* the rest fits the
        threshold, QEMU >= 10.1 starts post-copy: 10.1.0 ``migration.c:
        migration_iteration_run`` tests ``must_precopy <= s->threshold_size && can_switchover &&
        qatomic_read(&s->start_postcopy)`` → ``postcopy_start`` first, and only then
        ``complete_ready = can_switchover && (pending_size <= s->threshold_size)``; up to 10.0
        the completion test came first (10.0.0: ``if ((!pending_size || pending_size <
        s->threshold_size) && can_switchover)`` → ``migration_completion``).  With
        ``postcopy-ram`` RAM reports nothing as ``must_precopy``, so the switch test holds at any
        bitmap size.  A pass-triggered switch (``precopy_passes``, libvirt's
        ``--postcopy-after-precopy``) is asked for after the pass's sync has been seen, so the
        completion test at that sync comes first in every release.  (A 1 GiB guest on 1 GbE, 2,000
        writes/s, converging at the 9.5 s check: ``postcopy_after_s=9.46`` completed as
        pre-copy with 286 ms of downtime under 10.1 too; it now switches.)"""
        code = super().decide(st, ctx)
        first = released_since(self.qemu_version, POSTCOPY_BEFORE_COMPLETION_SINCE)
        # set before this check: the phase cut at the first check strictly after the time, or
        # a sync after it — a check at the time itself ran before the command (phase_pages);
        # whole pages end a phase up to a few pages off its check, so a sync within 1 ms of
        # the time is the check at it
        cut = np.asarray(st.extra.get("hybrid_cut", False), dtype=bool)
        due = first & (cut | (st.t > self._switch_at() + 1e-3))
        switch = due & (code == REASON_CODE["converged"])
        return np.where(switch, REASON_CODE["precopy_done"], code).astype(int)

    def _switch_at(self):
        return none_to(self.postcopy_after_s, np.inf)

    def forced(self, st, ctx):
        code = super().forced(st, ctx)
        done = (self.passes_done(st) >= self.precopy_passes) | self._switch_due(st)
        return np.where(done, REASON_CODE["precopy_done"], code)

    def _switch_due(self, st):
        """``postcopy_after_s`` has come: the phase :meth:`phase_pages` cut at the first check
        after it has ended (``hybrid_cut``), or a sync came at or after it.  The cut phase is
        whole pages at estimated costs, so it ends near its check, not at it: up to half a page
        either way from rounding the pages, and several pages early where the guest's writes
        turn zero pages into data (the page engine, 0.3 zero pages and uniform writes on 1 GbE:
        1.4e-4 s, 4 pages; 3.4e-4 s under a 40 MiB/s cap).  A test on the time alone (``t >=
        postcopy_after_s - 1e-9``) hung on that: a phase ending short ran one more check period
        and synced once more (1 GiB idle on 1 GbE, both engines: 1 and 3 s switched at their
        check, 0.5, 2, 5 and 7.3 s ~1e-5 s short at +0.05 s with rounds 2); a tolerance of a
        page's send time would still miss the several-page shortfalls."""
        cut = np.asarray(st.extra.get("hybrid_cut", False), dtype=bool)
        return cut | (st.t >= self._switch_at() - 1e-9)

    def phase_pages(self, st, ctx):
        """The phase running at ``postcopy_after_s`` ends at the first check after it
        (``migrate_start_postcopy`` is acted on between iterations, ``migration_iteration_run``),
        strictly after: a check falling at that time itself has run when the command comes (the
        model's checks count from the phase's start, so whole seconds fall on them; the testbed's
        QEMU acted 0.13-0.16 s after 2 and 4 s under a 100 ms check period — r05000-h064-rand-
        bw064-dl0300-pct2, r10000-h064-seq-bw064-dl0300-pct4 — and a check at the time itself
        had switched the model at 1 and 3 s but not at 0.5, 2, 5 and 7.3 s, by rounding):
        the pages sent by then at the pending pages' mean cost, or along the engine's scan
        profile where the zero pages lie in one stretch (``vm.zero_layout``; the mean took an
        idle Linux guest's first pass, its data first, for twice as fast: a switch asked for at
        2.02 s came at 4.04 s)."""
        k = super().phase_pages(st, ctx)
        left = self._switch_at() - st.t
        lk = self.link(st, ctx)
        period = self.check_period_s(st, ctx)
        per_check = period / self.pending_page_s(st, ctx, lk)  # zero pages too (issue 12)
        checks = np.maximum(np.floor(left / period + 1e-6) + 1.0, 1.0)  # strictly after it
        cap = np.round(self.pages_in_checks(st, checks, period, per_check))
        # the phase that ends at that check: the switch follows its sync wherever its whole pages
        # end it (_switch_due)
        cut = np.isfinite(left) & (cap <= k)
        st.extra["hybrid_cut"] = np.broadcast_to(cut, np.shape(st.t)).copy()
        return np.where(np.isfinite(left), np.clip(np.minimum(k, cap), 1, np.maximum(st.pending, 1)), k)

    def stationary(self, st):
        """A time-triggered switch is a rule on time: never leapt over."""
        return super().stationary(st) & ~np.isfinite(self._switch_at())

    def steady_horizon(self, st, ctx, phase_s, phase_bytes):
        h = super().steady_horizon(st, ctx, phase_s, phase_bytes)
        return np.minimum(h, np.maximum(self.precopy_passes - self.passes_done(st), 0.0))
