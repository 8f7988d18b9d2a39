"""Post-copy: switch to the destination first, then move memory while the guest runs there.

Sources:

* M. R. Hines, K. Gopalan, "Post-Copy Based Live Virtual Machine Migration Using Adaptive
  Pre-Paging and Dynamic Self-Ballooning", ACM VEE 2009, pp. 51–60: post-copy "defers the
  transfer of a VM's memory contents until after its processor state has been sent";
  "adaptive pre-paging in order to eliminate all duplicate page transmissions" and to
  reduce network-bound page faults.  M. R. Hines, U. Deshpande, K. Gopalan, "Post-Copy Live
  Migration of Virtual Machines", ACM SIGOPS OSR 43(3), 2009: demand paging, active push and
  pre-paging strategies compared.
* QEMU ``docs/devel/migration/postcopy.rst``: the destination detects missing pages with
  Linux ``userfaultfd`` and requests them (``MIG_RP_MSG_REQ_PAGES``) while the source keeps
  background-sending pages; "a failure of *either* side causes the guest to be lost".
  ``migration.c: postcopy_start`` stops the VM, sends discard ranges and the device state as
  one package, then resumes on the destination — the downtime is the CPU and device state.
  Linux ``Documentation/vm/userfaultfd.txt``: faults block only the faulting vCPU
  ("Userfaults trigger async page faults in the guest scheduler").

What the engines do with this policy (``engine/page.py: _postcopy``, ``engine/fluid.py:
_finish``): downtime = (discard ranges + device state) / link rate (+ ``stop_overhead_ms``
and the latency, :func:`lmtoolkit.engine.common.postcopy_switchover`); then every page not
yet on the destination is pushed once in address order (or hottest first with pre-paging),
and a guest access to a page not yet pushed is a demand fault costing a round trip plus the
page transfer plus ``fault_overhead_us``, stalling one vCPU (reported as ``guest_slowdown``,
faults as ``postcopy_faults``).  A stalled vCPU does not run, so each fault holds the guest's
later accesses back by its stall over the vCPUs, in the order the accesses come: the guest runs
slowly early in the push, while most pages are missing, and faster late
(``engine/common.py: stalled_count`` on the page engine's accesses, ``stalled_faults`` over
windows of the push for the fluid engine; at most ``vcpus x push / stall`` faults).  Each page
crosses the link about once.

A guest backed by huge pages (``vm.page_size_kib`` above 64) moves whole huge pages after the
switch, where its pre-copy tracked and sent 4 KiB pages (:func:`lmtoolkit.model.vm.tracked_page_kib`):
QEMU marks a huge page wholly dirty when any of its 4 KiB pages is and sends all of them
(``migration/ram.c: postcopy_chunk_hostpages_pass``, ``ram_save_host_page``), the destination
asks for the huge page holding a faulting address (``postcopy-ram.c: postcopy_request_page``
rounds it down to ``qemu_ram_pagesize``) and places it whole once its last 4 KiB page is in
(``ram.c: ram_load_postcopy`` → ``postcopy_place_page``).  So the push sends every 4 KiB page
of each huge page holding a pending one (each with its header, a zero one as a marker), a fault
is on a huge page (the guest's first touch of any of its 4 KiB pages before it is placed), and
a fault stalls its vCPU for the whole huge page (``engine/common.py: fault_stall_s``).

The switch's pause also sends the *discard ranges*: ``migration.c: postcopy_start`` stops the VM
and calls ``ram.c: ram_postcopy_send_discard_bitmap``, which syncs the bitmap once more and, per
RAMBlock, canonicalises it to whole host pages (``postcopy_chunk_hostpages_pass``) and sends
every run of consecutive dirty target pages as one (start, length) range
(``postcopy_send_discard_bm_ram`` → ``postcopy-ram.c: postcopy_discard_send_range``), before
the device-state package, on the same channel.  ``postcopy_discard_send_range`` ships them
``MAX_DISCARDS_PER_COMMAND`` = 12 to a ``MIG_CMD_POSTCOPY_RAM_DISCARD`` command
(``postcopy_discard_send_finish`` the rest of the block), and ``savevm.c:
qemu_savevm_send_postcopy_ram_discard`` lays one out as a version byte, the name's length,
the RAMBlock's name and a 0 byte, then a be64 start and a be64 length per range, behind
``qemu_savevm_command_send``'s ``QEMU_VM_COMMAND`` byte, be16 command and be16 length (the same
in 8.2.0, 9.2.0, 10.0.0 and 10.1.0).  So ``runs`` runs cost ``16 runs + (8 + name) x
ceil(runs / 12)`` bytes (:meth:`PostcopyPhase.discard_bytes`), guest RAM taken as the one
RAMBlock ``pc.ram`` (``hw/i386/pc.c``: ``default_ram_id``).  The page engine counts the runs
of its bitmap; the fluid engine takes their expected number (``engine/fluid.py:
_discard_runs``).  A run of dirty pages is a pre-copy leftover, so the pause of a post-copy
without pre-copy sends one range (every page is dirty), and a hybrid's after a pass left
19.7 % of a 4 GiB guest dirty (1 GbE, 10,000 random writes/s) 154,000 ranges, 2.65 MB: its
downtime went from 2.4 to 24.9 ms (both engines).  The
destination's work per range (``savevm.c: loadvm_postcopy_ram_handle_discard`` →
``ram_discard_range``, an ``madvise`` or hole punch each) is not modelled: no measured figure.

Post-copy's pages, like its pause, go over the one main migration channel: ``ram.c:
ram_save_target_page`` hands a page to multifd only ``if (migrate_multifd() &&
!migration_in_postcopy())`` and otherwise sends it with ``ram_save_page`` on the
``PageSearchStatus``'s channel, the main one (``to_dst_file``) for the background scan and for
the pages the destination asked for (``ram_save_queue_pages`` queues them for the migration
thread; with ``postcopy-preempt``, off by default and not modelled, they go on a channel of
their own).  10.1's ``ram_save_postcopy_prepare`` flushes the multifd channels before the
switch for that reason ("the load of these pages must happen before switching to
postcopy").  Post-copy runs at ``max-postcopy-bandwidth`` (``postcopy_start``:
``migration_rate_set(migrate_max_postcopy_bandwidth())``), whose default 0 is no limit: here
the link's rate for one stream (:meth:`PostcopyPhase.postcopy_rate_bytes_s`).

Parameters (our assumptions where no source gives a number):

* ``prepaging`` — push pages in order of expected access (hottest first) instead of address
  order.  Hines & Gopalan's adaptive pre-paging ("bubbling" around faulting addresses) learns
  locality from faults; ours is the idealised version that knows the hot set.
* ``access_factor`` — guest page accesses per page write (reads of a missing page fault too;
  1 counts writes only, a lower bound).
* ``fault_overhead_us`` — userfaultfd wake-up, request handling and page placement beyond
  the round trip and transfer (ours: 20 µs; no measured figure was retrieved).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import check_range
from ..records import REASON_CODE
from .base import Policy

#: postcopy-ram.c: MAX_DISCARDS_PER_COMMAND (ranges per MIG_CMD_POSTCOPY_RAM_DISCARD)
DISCARDS_PER_COMMAND = 12
#: savevm.c, qemu_savevm_send_postcopy_ram_discard: a be64 start and a be64 length per range
DISCARD_RANGE_BYTES = 16
#: the RAMBlock the ranges name: guest RAM's (hw/i386/pc.c: default_ram_id "pc.ram")
RAM_BLOCK_NAME = "pc.ram"
#: per command: QEMU_VM_COMMAND byte, be16 command, be16 length (qemu_savevm_command_send),
#: version byte, name length byte, the name and its 0 byte (qemu_savevm_send_postcopy_ram_discard)
DISCARD_COMMAND_BYTES = 1 + 2 + 2 + 1 + 1 + len(RAM_BLOCK_NAME) + 1


@dataclass(frozen=True)
class PostcopyPhase:
    """Mixin: the post-copy phase's parameters and the base hooks the engines call.

    Used by :class:`PostcopyPolicy` (no pre-copy) and :class:`~.hybrid.HybridPolicy`
    (pre-copy passes first).  Hooks accept scalar or stacked (array) fields.
    """

    prepaging: bool = False  # push the hottest pages first instead of address order
    access_factor: float = 1.0  # guest page accesses per page write (1 = writes only)
    fault_overhead_us: float = 20.0  # ours: fault handling beyond round trip + page transfer

    postcopy = True

    def __post_init__(self):
        super().__post_init__()
        check_range("access_factor", self.access_factor, 0, None, finite=True)
        check_range("fault_overhead_us", self.fault_overhead_us, 0, None, finite=True)

    def prepaging_enabled(self):
        return np.asarray(self.prepaging, dtype=bool)

    def fault_access_factor(self):
        return np.asarray(self.access_factor, dtype=float)

    def fault_overhead_s(self):
        return np.asarray(self.fault_overhead_us, dtype=float) * 1e-6

    def postcopy_rate_bytes_s(self, st, ctx):
        """One stream, the main migration channel, uncapped (module doc): the pages after the
        switch do not go over multifd's channels (``ram.c: ram_save_target_page``)."""
        return np.minimum(ctx.line_bytes_s, self.stream_rate_bytes_s(ctx))

    def discard_bytes(self, runs):
        """Bytes of the ``MIG_CMD_POSTCOPY_RAM_DISCARD`` commands for ``runs`` dirty runs of the
        one RAMBlock (module doc): 16 per range and a command's header per 12 ranges."""
        runs = np.asarray(runs, dtype=float)
        return DISCARD_RANGE_BYTES * runs + DISCARD_COMMAND_BYTES * np.ceil(runs / DISCARDS_PER_COMMAND)


@dataclass(frozen=True)
class PostcopyPolicy(PostcopyPhase, Policy):
    """Post-copy: switch at once (downtime: device state, one discard range), then push while faults pull."""

    name = "postcopy"
    precopy = False
    # dst_populate_mib_s (inherited) is read only by a stop-and-copy's pages (engine/common.py:
    # first_touch_s); here the pause sends the device state and the discard ranges, no page
    unused_fields = {
        "dst_populate_mib_s": "post-copy pauses the VM only to send its device state (and the ranges to "
        "discard); every page goes "
        "after the switch, by push or demand fault, so none is populated in the pause",
    }

    def converged(self, st, ctx):
        return np.zeros(np.shape(st.t), dtype=bool)

    def decide(self, st, ctx):
        return np.full(np.shape(st.t), REASON_CODE["no_precopy"], dtype=int)
