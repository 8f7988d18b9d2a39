"""Storage: shared (nothing to copy) or migrated with the VM (shared-nothing migration).

``mode: migrate`` copies the virtual disk **before** memory, with its own dirty-block
tracking, then keeps it in sync by mirroring the guest's writes while memory migrates:

1. *Bulk copy with dirty-block passes* — the whole disk (``disk_gib``) is copied while a
   dirty bitmap of ``block_kib`` blocks records the guest's writes; then the dirty blocks are
   copied again, pass after pass, until what is dirty could be sent within ``ready_s`` (or
   after ``max_passes``), within the migration's ``policy.timeout_s``: a copy not in sync by
   then ends the migration there, memory never started (:func:`disk_precopy`).  This is QEMU's ``drive-mirror`` / ``blockdev-mirror`` job (a
   ``block-dirty-bitmap`` with a default granularity of 64 KiB for most images, a power of two
   from 512 B to 64 MiB (:data:`BLOCK_KIB_RANGE`); the job
   emits ``BLOCK_JOB_READY`` once source and target are in sync) and the iterative
   dirty-block-tracking design of VMware Storage vMotion in ESX 4.x (Mashtizadeh et al.,
   "The Design and Evolution of Live Storage Migration in VMware ESX", USENIX ATC 2011 —
   cited for the design lineage, its text not re-read here).
2. *Mirroring* — from then on each guest write goes to both disks (QEMU ``copy-mode:
   write-blocking``; ESX 5.0+ Storage vMotion's mirror driver), so memory's live pre-copy
   phase runs over a link that also carries ``write_rate_mib_s`` of mirrored writes, and the
   disk is in sync at the switchover.  Only while the guest runs on the source: paused, it
   writes nothing, and after the switchover it writes the destination's disk, so the pause
   and post-copy's push have the whole link (:meth:`lmtoolkit.policies.base.Context.paused`
   cites the QEMU sources).  ``vMotion without shared storage`` in vSphere 5.1+ is this combination
   (disk first, memory after; VMware's "Limits on Simultaneous Migrations" counts it as a
   Storage vMotion with a network cost).

Why *before* and not alongside: both vendors finish the bulk disk copy before the memory
pre-copy starts, and the disk (tens of GiB) dominates; running them alongside would only
split the link between two streams for the same total bytes.

Writes are ``write_rate_mib_s`` of block-sized writes, Poisson over ``write_set_gib`` of the
disk (null = all of it); the passes use the same closed form as the fluid engine's memory
rounds, so both engines report identical storage results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError, check_choice, check_range
from .checks import check_fields, refuse_unused
from .vm import GIB, KIB, MIB

STORAGE_MODES = ("shared", "migrate")
#: the mirror's dirty-bitmap granularity QEMU accepts, KiB: a power of two from 512 B to 64 MiB
#: (10.0.13 ``blockdev.c: blockdev_mirror_common``: ``granularity < 512 || granularity >
#: 1048576 * 64`` -> "a value in range [512B, 64MB]", ``granularity & (granularity - 1)`` -> "a
#: power of 2"; ``qapi/block-core.json``, ``drive-mirror``/``blockdev-mirror``: "Must be a power
#: of 2 between 512 and 64M")
BLOCK_KIB_RANGE = (0.5, 64 * 1024)


@dataclass(frozen=True)
class Storage:
    mode: str = "shared"
    disk_gib: float = 40.0
    write_rate_mib_s: float = 5.0
    write_set_gib: float | None = None
    block_kib: float = 64.0
    ready_s: float = 1.0
    max_passes: int = 30

    def __post_init__(self):
        check_fields(self)
        check_choice("mode", self.mode, STORAGE_MODES)
        check_range("disk_gib", self.disk_gib, 0, 1e6, lo_open=True)  # up to a PiB
        check_range("write_rate_mib_s", self.write_rate_mib_s, 0, None, finite=True)
        if self.write_set_gib is not None:
            check_range("write_set_gib", self.write_set_gib, 0, self.disk_gib, lo_open=True)
        check_range("block_kib", self.block_kib, *BLOCK_KIB_RANGE)
        block = float(self.block_kib) * KIB
        if not block.is_integer() or int(block) & (int(block) - 1):
            raise ConfigError(
                "block_kib",
                self.block_kib,
                "must be a power of two from 0.5 to 65536 (KiB): QEMU's mirror granularity "
                '(blockdev.c, blockdev_mirror_common: "a power of 2", "in range [512B, 64MB]")',
            )
        check_range("ready_s", self.ready_s, 0, None, lo_open=True, finite=True)
        check_range("max_passes", self.max_passes, 1, 10**6)
        refuse_unused(self, self.unused_keys(), f"storage.mode={self.mode}")

    def unused_keys(self) -> dict[str, str]:
        """Keys nothing reads, given the mode: key -> why (refused away from their defaults,
        :func:`~lmtoolkit.model.checks.refuse_unused`): with shared storage no disk is copied
        nor mirrored (``storage=shared storage.disk_gib=100`` ran as if it were 40)."""
        if self.migrates:
            return {}
        why = (
            "with shared storage the disk stays where it is: nothing copies or mirrors it (mode=migrate does)"
        )
        return dict.fromkeys(
            ("disk_gib", "write_rate_mib_s", "write_set_gib", "block_kib", "ready_s", "max_passes"), why
        )

    @property
    def migrates(self) -> bool:
        return self.mode == "migrate"

    @property
    def mirror_bytes_s(self) -> float:
        """Mirrored guest writes on the link while memory migrates live (bytes/s; none in the
        pause nor after the switchover: :meth:`~lmtoolkit.policies.base.Context.paused`)."""
        return self.write_rate_mib_s * MIB if self.migrates else 0.0

    def copy_rate_bytes_s(self, network) -> float:
        """The rate the disk copy gets (bytes/s): the network's payload rate on its own
        ``network.streams`` streams (:meth:`~lmtoolkit.model.network.Network.payload_bytes_s`:
        the line less background traffic, each stream at most ``stream_gbit_s`` and one TCP
        window per round trip).  The disk goes over the block job's connection (QEMU: the
        mirror job writes to an NBD export on the destination, ``docs/interop/
        live-block-operations.rst``), not the memory migration's extra channels (multifd,
        vMotion stream helpers), which are the policy's (**ours**: the split is not
        documented for vMotion).  The bulk copy, its passes and the mirrored writes all run
        on it (:func:`disk_precopy`, :meth:`check_link`)."""
        return float(network.payload_bytes_s())

    def check_link(self, copy_bytes_s: float, network=None) -> None:
        """Refuse guest writes at or above the disk copy's rate ``copy_bytes_s``
        (:meth:`copy_rate_bytes_s`): the dirty blocks would never drain.

        QEMU ``block/mirror.c: mirror_run``: the job loops copying dirty chunks and calls
        ``job_transition_to_ready`` (``BLOCK_JOB_READY``) only once ``cnt ==
        bdrv_get_dirty_count(...) == 0`` with nothing in flight; until then
        ``mirror_complete`` refuses ("The active block job ... cannot be completed") and the
        migration, started on ``BLOCK_JOB_READY`` (``docs/interop/live-block-operations.rst``,
        drive-mirror + NBD), never starts.  ``do_sync_target_write``'s comment says the same
        of a guest writing faster than the background copy: "we will not converge anyway".
        And from ``BLOCK_JOB_READY`` to the switchover the mirror runs in ``write-blocking``
        copy mode (``qapi/block-core.json``, ``MirrorCopyMode``: "when data is written to the
        source, write it (synchronously) to the target as well"): every guest write crosses
        the link on that connection, so it must carry ``write_rate_mib_s`` whatever the write
        set (the same rate: one check for both).  Writes slower than the copy drain geometrically (each pass's dirty blocks are
        written at ``write_rate`` over a pass ``write_rate / rate`` times shorter than the
        last), so the passes of :func:`disk_precopy` converge; at or above it the model's
        ``max_passes`` would only hide a job that never becomes ready (``network=wan
        storage=migrate storage.write_rate_mib_s=60`` reported 30 re-copies of a 40 GiB disk
        over 9,210 s and "converged yes")."""
        if not self.migrates or self.mirror_bytes_s < copy_bytes_s:
            return
        how = ""
        if network is not None:
            how = (
                f" (network payload on network.streams={network.streams} stream(s), each at most "
                f"{network.stream_payload_bytes_s / MIB:.1f} MiB/s: stream_gbit_s and tcp_window_mib / RTT)"
            )
        raise ConfigError(
            "storage.write_rate_mib_s",
            self.write_rate_mib_s,
            "",
            message=(
                f"storage.write_rate_mib_s={self.write_rate_mib_s:g} is not allowed with storage.mode=migrate: "
                f"it must stay below {copy_bytes_s / MIB:.1f} MiB/s, the rate the disk copy gets{how}; "
                "writes at or above it dirty blocks faster than they are copied, so the disk mirror "
                "never becomes ready and the migration never starts (QEMU block/mirror.c: mirror_run)"
            ),
        )


@dataclass(frozen=True)
class DiskCopy:
    """The disk copy before memory: its time (s), bytes and passes; ``ready``: in sync (the
    mirror's ``BLOCK_JOB_READY``) before the deadline, false where it was abandoned there (then
    ``time_s`` is the deadline and ``bytes`` what was sent by then)."""

    time_s: float
    bytes: float
    passes: int
    ready: bool = True


def disk_precopy(st: Storage, rate_bytes_s: float, deadline_s: float = math.inf) -> DiskCopy:
    """Bulk copy plus dirty-block passes at ``rate_bytes_s`` (closed form, expected values),
    abandoned at ``deadline_s`` (s, the migration's ``policy.timeout_s``) if not in sync by then.

    The memory migration starts only once the mirror is in sync: QEMU ``block/mirror.c:
    mirror_run`` calls ``job_transition_to_ready`` (``BLOCK_JOB_READY``) only when ``cnt == 0``
    with nothing in flight, and live storage migration starts the memory migration on that
    event (``docs/interop/live-block-operations.rst``, drive-mirror + NBD: "Once
    ``drive-mirror`` copies the entire data, and the event ``BLOCK_JOB_READY`` is emitted").
    The migration's timeout covers that wait: a copy still not in sync at ``deadline_s`` is
    cancelled there (``block-job-cancel`` of a job not yet ready; the guest never stopped and
    keeps running on the source).  The link is busy throughout (passes back to back), so the
    bytes sent by the deadline are ``rate x deadline``."""
    if not st.migrates:
        return DiskCopy(0.0, 0.0, 0)
    block = st.block_kib * KIB
    n_ws = max(1.0, (st.write_set_gib if st.write_set_gib is not None else st.disk_gib) * GIB / block)
    lam = st.write_rate_mib_s * MIB / block / n_ws  # writes per block per second
    pending = st.disk_gib * GIB  # bytes to send this pass
    t = sent = 0.0
    passes = 0
    begun = 0  # passes begun before the deadline
    while True:
        T = pending / rate_bytes_s
        begun += t < deadline_s
        t += T
        sent += pending
        passes += 1
        # Blocks written during the pass are dirty at its end (sent blocks re-dirtied or not).
        pending = n_ws * -math.expm1(-lam * T) * block
        if pending / rate_bytes_s <= st.ready_s or passes >= st.max_passes or pending <= 0:
            break
    # The last dirty blocks are flushed when the mirror takes over.
    if pending > 0:
        begun += t < deadline_s
    t += pending / rate_bytes_s
    sent += pending
    if t >= deadline_s:  # not in sync by the deadline: abandoned there, memory never starts
        return DiskCopy(float(deadline_s), rate_bytes_s * float(deadline_s), begun, ready=False)
    return DiskCopy(t, sent, passes + (1 if pending > 0 else 0))
