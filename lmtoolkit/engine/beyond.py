"""Beyond one link: what both engines add after the memory migration (issue 7).

The memory migration itself already sees the network effects through the policy's
:class:`~lmtoolkit.policies.base.Context` (TCP window / RTT cap per stream, background
traffic, mirrored disk writes sharing the link, checksum hashing time per page, and the
pages re-sent after a checksum mismatch — :meth:`~lmtoolkit.policies.base.Policy.link`, in
the pass or the pause that sent them).  This module adds, from the scenario and the memory
migration's time and bytes, the parts that do not depend on page-level detail — so the page
and fluid engines report them identically:

* NUMA: ``numa_compatible``, ``numa_penalty`` (:mod:`lmtoolkit.model.numa`);
* copy errors (:mod:`lmtoolkit.model.reliability`): ``corruption_probability`` over the
  pages moved, and what the memory migration's bytes already hold — the re-sent share of the
  verified page transmissions (``retransmitted``) and their hashing CPU-seconds on both
  hosts (``checksum_cpu_time``), counted from the bytes as the energy model counts them
  (:func:`lmtoolkit.model.energy.pages_sent`, :func:`~lmtoolkit.model.reliability.checksum_cpu_s`);
* shared-nothing storage: the disk pre-copy before memory (time and bytes, at the one rate
  the disk copy gets, :attr:`lmtoolkit.scenario.Scenario.disk_rate_bytes_s`) and the mirrored
  writes during the memory migration's live phase only — the guest writes nothing while
  paused and writes its own disk on the destination after the switchover
  (:meth:`lmtoolkit.policies.base.Context.paused` cites QEMU); round start times shift by
  the disk phase, so ``round_start`` stays the time since the migration began.

The migration's ``policy.timeout_s`` covers the disk copy too: the memory migration runs
with what the disk copy left of it (:func:`memory_policy`), and a disk copy not in sync by
the timeout ends the migration there (:func:`~lmtoolkit.model.storage.disk_precopy`): the
engines then record a memory migration that never started (:data:`NOT_STARTED`), and this
module adds the disk copy up to the timeout.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..model.energy import page_constants, pages_sent
from ..model.numa import numa_effect
from ..model.reliability import checksum_cpu_s, corruption, page_error_probability, resent_share
from ..model.storage import DiskCopy, disk_precopy

#: record fields of a memory migration that never started: its disk copy was not in sync by
#: the timeout (``stop_reason`` timeout, nothing sent, no pause: downtime NaN)
NOT_STARTED = dict(
    total_time_s=0.0,
    downtime_s=np.nan,
    transferred_bytes=0.0,
    rounds=0,
    converged=False,
    completed=False,
    stop_reason="timeout",
    throttle_max=0.0,
    guest_slowdown=0.0,
    postcopy_faults=0.0,
    postcopy_time_s=0.0,
    precopy_bytes=0.0,
    stop_bytes=0.0,
)


def disk_copy(scn) -> DiskCopy:
    """The disk copy of ``scn`` before memory, abandoned at ``policy.timeout_s`` if not in sync
    by then (:func:`~lmtoolkit.model.storage.disk_precopy`)."""
    return disk_precopy(scn.storage, scn.disk_rate_bytes_s, float(scn.policy.timeout_s))


def memory_policy(scn, disk: DiskCopy | None = None):
    """The policy the memory migration of ``scn`` runs with: ``timeout_s`` less the disk copy's
    time, so that the timeout counts from the start of the migration, disk included (a 600 s
    timeout after 1,734 s of disk copy had let memory run 600 s more).  ``scn.policy`` itself
    without a disk copy, and where the copy took the whole timeout (the memory migration does
    not start: :data:`NOT_STARTED`).  ``disk``: :func:`disk_copy` of ``scn`` if known."""
    disk = disk_copy(scn) if disk is None else disk
    if disk.time_s <= 0 or not disk.ready:
        return scn.policy
    return dataclasses.replace(scn.policy, timeout_s=float(scn.policy.timeout_s) - disk.time_s)


def scenario_constants(scns) -> dict[str, np.ndarray]:
    """Per-scenario inputs of :func:`effects` (arrays over ``scns``)."""
    rows = []
    for s in scns:
        ne = numa_effect(s.vm.memory_gib, s.host)
        disk = disk_copy(s)
        rows.append(
            {
                **page_constants(s),
                "numa_ok": ne.compatible,
                "numa_pen": ne.penalty,
                "p_page": float(page_error_probability(s.host.bit_error_rate, s.vm.page_bytes, s.host.ecc)),
                "verify": bool(s.policy.verify_checksums),
                "disk_t": disk.time_s,
                "disk_b": disk.bytes,
                "mirror": s.storage.mirror_bytes_s,
            }
        )
    return {k: np.asarray([r[k] for r in rows]) for k in rows[0]}


def effects(c: dict, total_s, transferred, live_s) -> dict[str, np.ndarray]:
    """Record-field updates for memory migrations of ``total_s`` s and ``transferred`` bytes
    (re-sent pages included: the engines' per-page costs hold them).

    ``c`` comes from :func:`scenario_constants` (indexed like ``total_s``); ``live_s`` is
    the memory migration's live phase (pre-copy, until the guest pauses), the only time the
    disk writes are mirrored (:meth:`~lmtoolkit.policies.base.Context.paused`).  Returns the
    new values of the affected record fields plus ``shift_s`` (disk phase before memory).
    """
    total_s = np.asarray(total_s, dtype=float)
    transferred = np.asarray(transferred, dtype=float)
    verify = c["verify"].astype(bool)
    nonzero, _ = pages_sent({"transferred_bytes": transferred, "memory_bytes": c["memory_bytes"]}, c)
    prob = corruption(transferred / c["page_bytes"], c["p_page"], verify)
    resent_b = resent_share(c["p_page"], verify) * nonzero * c["nonzero_wire_bytes"]
    # both hosts hash every verified transmission: the CPU-seconds the energy model charges
    hash_cpu = 2.0 * checksum_cpu_s(nonzero, c["page_bytes"], c["hash_cpu_s_per_byte"])
    mirror_b = c["mirror"] * np.nan_to_num(np.asarray(live_s, dtype=float))
    storage_b = c["disk_b"] + mirror_b
    return {
        "numa_compatible": c["numa_ok"].astype(bool),
        "numa_penalty": c["numa_pen"].astype(float),
        "corruption_probability": prob,
        "retransmitted_bytes": resent_b,
        "checksum_cpu_time_s": hash_cpu,
        "storage_time_s": c["disk_t"].astype(float),
        "storage_bytes": storage_b,
        "total_time_s": c["disk_t"] + total_s,
        "transferred_bytes": transferred + storage_b,
        "shift_s": c["disk_t"].astype(float),
        "extra_precopy_bytes": c["disk_b"] + mirror_b,
    }


def apply_to_batch(out, scns, inverse=None, *, live_s) -> None:
    """Update a :class:`~lmtoolkit.engine.common.BatchResult` in place (fluid engine);
    ``live_s`` (per row): when each migration's live phase ended."""
    c = scenario_constants(scns)
    if inverse is not None:
        c = {k: v[np.asarray(inverse)] for k, v in c.items()}
    sc = out.scalars
    e = effects(c, sc["total_time_s"], sc["transferred_bytes"], live_s)
    sc["precopy_bytes"] = sc["precopy_bytes"] + e.pop("extra_precopy_bytes")
    shift = e.pop("shift_s")
    for k, v in e.items():
        sc[k] = np.asarray(v, dtype=sc[k].dtype)
    out.round["round_start"] = out.round["round_start"] + shift[:, None]


def apply_to_record(rec, scn, *, live_s):
    """Update a :class:`~lmtoolkit.records.MigrationRecord` in place (page engine);
    ``live_s``: when the live phase ended."""
    c = scenario_constants([scn])
    e = {
        k: np.asarray(v).reshape(-1)[0]
        for k, v in effects(c, [rec.total_time_s], [rec.transferred_bytes], [live_s]).items()
    }
    rec.precopy_bytes = float(rec.precopy_bytes + e.pop("extra_precopy_bytes"))
    shift = float(e.pop("shift_s"))
    for k, v in e.items():
        setattr(rec, k, bool(v) if k == "numa_compatible" else float(v))
    if shift:
        for rr in rec.round_detail:
            rr.start_s += shift
    return rec
