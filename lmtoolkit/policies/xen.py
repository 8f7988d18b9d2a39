"""Xen-like pre-copy (``xl migrate``), the two generations of the save loop.

* ``version: classic`` — ``tools/libxc/xc_domain_save.c`` (Xen <= 4.5, migration stream v1),
  ``xc_domain_save``:

  - ``DEF_MAX_ITERS 29`` ("limit us to 30 times round loop") and ``iter`` counts the live
    iterations from 1: after iteration ``iter`` the loop starts the last (suspended) one when
    ``iter >= max_iters`` — so **29 live passes** plus the final one (``max_rounds: 29``).
  - The other stop tests are on the pass *just finished*: ``sent_this_iter + skip_this_iter
    < 50`` — the pages of that pass's ``to_send`` bitmap, sent or skipped, not the bitmap the
    next pass would send (``dirty_threshold_pages``, read as ``State.phase_scanned``);
    ``total_sent > p2m_size * max_factor`` with ``DEF_MAX_FACTOR 3`` — pages sent (not
    skipped) against ``p2m_size`` (``max_factor``, reason ``max_sent``).  ``p2m_size`` is
    ``xc_domain_maximum_gpfn(xch, dom) + 1``, the highest guest frame in use plus one, which
    depends on the guest type (``guest``): a PV guest's own page count (its ``max_pfn``: the
    guest's pages, ``guest: pv``, the default and Clark et al.'s case); an HVM guest's frames
    reach its special pages at the top of the low 4 GiB (``xc_hvm_build_x86.c``:
    ``special_pfn(x)`` = ``0xff000 - NR_SPECIAL_PAGES + x``, populated for every HVM guest), and
    RAM above ``HVM_BELOW_4G_RAM_END`` (0xF0000000) is moved above 4 GiB past the 256 MiB
    ``HVM_BELOW_4G_MMIO_LENGTH`` hole (``build_hvm_info``: ``highmem_end``) — so ``p2m_size`` is
    0xff000 frames (4080 MiB) up to 3.75 GiB of RAM and the RAM plus 256 MiB above
    (``guest: hvm``; a 1 GiB HVM guest may send 12 GiB before this stop, not 3).  (The
    ``sent_this_iter > sent_last_iter && RATE_IS_MAX()`` test is dead code in 4.0 and 4.1:
    ``RATE_IS_MAX()`` is 0 unless ``ADAPTIVE_SAVE`` is defined, which it is not; 4.2 removed it.)
  - The log is cleared at the end of each pass (``XEN_DOMCTL_SHADOW_OP_CLEAN`` into
    ``to_send``), and before each batch of ``MAX_BATCH_SIZE`` (1024) pages the loop peeks it
    (``SHADOW_OP_PEEK`` into ``to_skip``): a page of ``to_send`` already written again is
    skipped (``skip_this_iter++``) — it is still in the log, so it goes out with the next
    pass.  ``dirty_clear: skip`` (see :mod:`lmtoolkit.engine.page`).

* ``version: v2`` — ``tools/libs/guest/xg_sr_save.c`` (Xen >= 4.15; ``tools/libxc/xc_sr_save.c``
  in 4.6–4.14, stream v2), ``send_memory_live`` with ``simple_precopy_policy`` (4.10+; 4.6–4.9
  the same loop with ``max_iterations`` / ``dirty_threshold``, stopping at <= 50): after each pass the log is cleared
  into the dirty bitmap (``SHADOW_OP_CLEAN``; no ``to_skip`` — every page in the bitmap is
  sent, ``dirty_clear: sync``); the policy stops when ``dirty_count <
  SPP_TARGET_DIRTY_COUNT`` (50) *on that new bitmap* or ``iteration >= SPP_MAX_ITERATIONS``
  (5).  On the < 50 stop the loop still sends those pages live before breaking (the send
  precedes the ``break``), then suspends and sends what was written meanwhile
  (``suspend_and_send_dirty``); the 5-pass stop breaks right after the fifth pass.  No 3x
  factor.

* **No zero-page detection** in either generation: every page with stream data is sent whole
  (v2 ``write_batch`` sends ``PAGE_SIZE`` for each page ``page_type_has_stream_data`` accepts,
  only XTAB/BROKEN/XALLOC pages go without; classic likewise), so zero pages cost what any
  page costs (``detects_zero_pages = False``; QEMU sends 9 bytes for one).

* **8 bytes per page** beyond its content (``page_header_bytes`` 8), both generations:
  classic writes each batch as its count (an ``unsigned int``), then ``pfn_type`` — an
  ``unsigned long`` (8 bytes) per page — then the pages (``xc_domain_save``: ``wrexact(io_fd,
  &batch, …)``, ``wrexact(io_fd, pfn_type, sizeof(unsigned long)*batch)``); v2's
  ``write_batch`` sends a ``PAGE_DATA`` record per batch — type and length, a
  ``rec_page_data_header``, then a ``uint64_t`` pfn per page (``rec_pfns``) before the
  pages.  The per-batch bytes (4, or 16, per up to 1024 pages) are left out.

* **Switchover handshake** (both generations; ``tools/xl/xl_migrate.c``, ``migrate_domain``
  and ``migrate_receive``, ``xl_cmdimpl.c`` before Xen 4.9): when the stream has arrived the
  receiver writes ``migrate_receiver_ready`` ("domain received, ready to unpause"), the
  sender renames its copy and writes ``migrate_permission_to_go`` ("domain is yours, you are
  cleared to unpause"), and only then does the receiver unpause the domain — the guest stays
  paused for three one-way crossings of the link after the last byte is sent
  (``switchover_trips = 3``, :func:`lmtoolkit.engine.common.switchover_latency_s`).

Also Clark et al., NSDI 2005 (the classic design).  ``max_rounds`` / ``max_factor`` /
``dirty_threshold_pages`` override the version's values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import check_choice, check_range
from ..records import REASON_CODE
from .base import none_to
from .precopy import PrecopyPolicy

#: version -> the values of the keys left null (max_factor inf = no cap)
VERSIONS = {
    "classic": {"max_rounds": 29, "max_factor": 3.0, "dirty_threshold_pages": 50},
    "v2": {"max_rounds": 5, "max_factor": float("inf"), "dirty_threshold_pages": 50},
}
#: version -> when a page's dirty log is cleared (the Policy.dirty_clear hook)
CLEAR = {"classic": "skip", "v2": "sync"}
#: guest types, for classic's p2m_size (module doc)
GUESTS = ("pv", "hvm")
#: xc_hvm_build_x86.c (Xen 4.5): special_pfn(0..7) end below pfn 0xff000, in bytes
HVM_SPECIAL_END = 0xFF000 * 4096
#: xen/include/public/hvm/e820.h: HVM_BELOW_4G_RAM_END, and the MMIO hole above it (bytes)
HVM_LOW_RAM_END = 0xF0000000
HVM_MMIO_HOLE = (1 << 32) - HVM_LOW_RAM_END


@dataclass(frozen=True)
class XenPolicy(PrecopyPolicy):
    """Xen: 29 live passes (v2: 5), stop below 50 dirty pages or after 3x its frames (p2m_size) sent."""

    version: str = "classic"  # classic (xc_domain_save.c) | v2 (xg_sr_save.c)
    max_rounds: int | None = None  # null = the version's (29 live passes / 5)
    max_factor: float | None = None  # null = the version's (3 x p2m_size / none)
    dirty_threshold_pages: int | None = None  # null = the version's (50)
    guest: str = "pv"  # pv | hvm: what classic's p2m_size counts (the 3x cap's base)
    # downtime_limit_ms and zero_page_bytes (inherited) are not used by Xen's rules
    unused_fields = {
        "downtime_limit_ms": "Xen stops on live passes, dirty pages left and bytes sent "
        "(xc_domain_save.c / xg_sr_save.c), not on a downtime target",
        "zero_page_bytes": "Xen sends every page whole (no zero-page detection)",
    }

    name = "xen"
    detects_zero_pages = False  # every page goes out whole (module doc)
    switchover_trips = 3  # stream, "ready to unpause", "cleared to unpause" (module doc)
    stop_reasons = ("max_sent",)

    def __post_init__(self):
        self.resolve_profile("version", VERSIONS)
        super().__post_init__()
        check_range("max_factor", self.max_factor, 1, None)
        check_range("dirty_threshold_pages", self.dirty_threshold_pages, 0, None, finite=True)  # an integer
        check_choice("guest", self.guest, GUESTS)

    def unused_keys(self):
        """``guest`` decides only the base of the ``max_factor`` cap: unused without one (v2)."""
        out = super().unused_keys()
        if self.max_factor is not None and not np.isfinite(self.max_factor):
            out["guest"] = (
                f"the guest type decides only the base of the max_factor cap (p2m_size), and "
                f"version {self.version} has none (max_factor {self.max_factor})"
            )
        return out

    def p2m_pages(self, ctx):
        """Classic's ``p2m_size`` in the migration's pages (module doc): the guest's pages (PV),
        or its frames up to the HVM special pages below 0xff000, or its RAM plus the 256 MiB
        MMIO hole when RAM reaches above 0xF0000000 (HVM)."""
        mem = np.asarray(ctx.memory_bytes, dtype=float)
        hvm_bytes = np.maximum(np.where(mem > HVM_LOW_RAM_END, mem + HVM_MMIO_HOLE, 0.0), HVM_SPECIAL_END)
        hvm = np.asarray(self.guest) == "hvm"
        return np.where(hvm, hvm_bytes / np.asarray(ctx.page_bytes, dtype=float), ctx.pages)

    def network_streams_unused(self):
        """``xl migrate`` writes the libxl stream to one fd, the pipe to its ``ssh`` child
        (``tools/xl/xl_migrate.c: migrate_domain`` -> ``libxl_domain_suspend(ctx, domid,
        send_fd, …)``): one stream, whatever ``network.streams`` says."""
        return (
            "xl migrate sends the libxl stream over one fd, the pipe to its ssh child "
            "(tools/xl/xl_migrate.c: migrate_domain -> libxl_domain_suspend): one stream"
        )

    @property
    def dirty_clear(self):
        """``skip`` for classic (``to_skip``), ``sync`` for v2 — per scenario when stacked."""
        v = np.asarray(self.version)
        return np.where(v == "classic", CLEAR["classic"], CLEAR["v2"]) if v.ndim else CLEAR[str(v)]

    def _classic(self):
        return np.asarray(self.version) == "classic"

    def init_state(self, st, ctx):
        super().init_state(st, ctx)
        z = np.zeros_like(st.t)
        st.extra.update(xen_last_live=z.copy(), xen_done=z.copy())

    def after_sync(self, st, ctx):
        super().after_sync(st, ctx)
        ex = st.extra
        # v2: the pass that sent the < 50 pages found at the previous sync was the last live one
        ex["xen_done"] = np.where(ex["xen_last_live"] > 0, 1.0, ex["xen_done"])
        small = (st.pending < self.dirty_threshold_pages) & ~self._classic() & (ex["xen_done"] == 0)
        ex["xen_last_live"] = np.where(small & (ex["xen_last_live"] == 0), 1.0, 0.0)

    def converged(self, st, ctx):
        # classic: the pass just finished had < 50 pages to send (sent + skipped)
        classic = (self.passes_done(st) >= 1) & (st.phase_scanned < self.dirty_threshold_pages)
        # v2: the < 50 pages found at a sync were sent live in one more pass
        v2 = st.extra["xen_done"] > 0
        return np.where(self._classic(), classic, v2)

    def convergence_margin_pages(self, st, ctx):
        """Xen's test is on pages scanned (classic) or a two-step state (v2): not a margin."""
        return np.full(np.shape(st.t), np.nan)

    def forced(self, st, ctx):
        code = super().forced(st, ctx)
        too_much = st.sent_pages > none_to(self.max_factor, np.inf) * self.p2m_pages(ctx)
        return np.where((code == 0) & too_much, REASON_CODE["max_sent"], code)

    def stationary(self, st):
        """Never leapt over by the fluid engine: the stop tests read the last pass (classic)
        and a two-step state (v2), and there are at most 29 live passes anyway."""
        return np.zeros(np.shape(st.t), dtype=bool)
