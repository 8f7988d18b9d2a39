"""Beyond one link: what both engines add after the memory migration (issue 7).

The memory migration itself already sees the network effects through the policy's
:class:`~lmtoolkit.policies.base.Context` (TCP window / RTT cap per stream, background
traffic, mirrored disk writes sharing the link, checksum hashing time per page).  This module
adds, from the scenario and the memory migration's time and bytes, the parts that do not
depend on page-level detail — so the page and fluid engines report them identically:

* NUMA: ``numa_compatible``, ``numa_penalty`` (:mod:`lmtoolkit.model.numa`);
* copy errors: ``corruption_probability``, re-sent pages and their time, hashing time
  (:mod:`lmtoolkit.model.reliability`);
* shared-nothing storage: the disk pre-copy before memory (time and bytes) and the mirrored
  writes during the memory migration's live phase only — the guest writes nothing while
  paused and writes its own disk on the destination after the switchover
  (:meth:`lmtoolkit.policies.base.Context.paused` cites QEMU); round start times shift by
  the disk phase, so ``round_start`` stays the time since the migration began.
"""

from __future__ import annotations

import numpy as np

from ..model.numa import numa_effect
from ..model.reliability import corruption
from ..model.storage import disk_precopy


def scenario_constants(scns) -> dict[str, np.ndarray]:
    """Per-scenario inputs of :func:`effects` (arrays over ``scns``)."""
    cols = {
        k: []
        for k in (
            "numa_ok",
            "numa_pen",
            "p_bit",
            "ecc",
            "verify",
            "page",
            "rate",
            "hash",
            "disk_t",
            "disk_b",
            "mirror",
        )
    }
    for s in scns:
        ne = numa_effect(s.vm.memory_gib, s.host)
        ctx = s.context()
        rate = float(s.policy.streams_rate_bytes_s(ctx))
        disk = disk_precopy(s.storage, s.network.payload_bytes_s())
        for k, v in (
            ("numa_ok", ne.compatible),
            ("numa_pen", ne.penalty),
            ("p_bit", s.host.bit_error_rate),
            ("ecc", s.host.ecc),
            ("verify", bool(s.policy.verify_checksums)),
            ("page", s.vm.page_bytes),
            ("rate", rate),
            ("hash", ctx.hash_bytes_s),
            ("disk_t", disk.time_s),
            ("disk_b", disk.bytes),
            ("mirror", s.storage.mirror_bytes_s),
        ):
            cols[k].append(v)
    return {k: np.asarray(v) for k, v in cols.items()}


def effects(c: dict, total_s, transferred, live_s) -> dict[str, np.ndarray]:
    """Record-field updates for memory migrations of ``total_s`` s and ``transferred`` bytes.

    ``c`` comes from :func:`scenario_constants` (indexed like ``total_s``); ``live_s`` is
    the memory migration's live phase (pre-copy, until the guest pauses), the only time the
    disk writes are mirrored (:meth:`~lmtoolkit.policies.base.Context.paused`).  Returns the
    new values of the affected record fields plus ``shift_s`` (disk phase before memory).
    """
    total_s = np.asarray(total_s, dtype=float)
    transferred = np.asarray(transferred, dtype=float)
    prob, resent_pages = corruption(transferred, c["page"], c["p_bit"], c["ecc"], c["verify"])
    resent_b = resent_pages * c["page"]
    resend_t = resent_b / np.maximum(c["rate"], 1e-300)
    mem_t = total_s + resend_t
    mirror_b = c["mirror"] * np.nan_to_num(np.asarray(live_s, dtype=float))
    storage_b = c["disk_b"] + mirror_b
    return {
        "numa_compatible": c["numa_ok"].astype(bool),
        "numa_penalty": c["numa_pen"].astype(float),
        "corruption_probability": prob,
        "retransmitted_bytes": resent_b,
        "checksum_cpu_time_s": np.where(c["verify"], transferred / c["hash"], 0.0),
        "storage_time_s": c["disk_t"].astype(float),
        "storage_bytes": storage_b,
        "total_time_s": c["disk_t"] + mem_t,
        "transferred_bytes": transferred + resent_b + storage_b,
        "shift_s": c["disk_t"].astype(float),
        "extra_precopy_bytes": c["disk_b"] + mirror_b + resent_b,
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
