"""Derive the log fixtures of tests/data/logs/ from recorded testbed runs (see README.md).

    python tests/data/logs/make_fixtures.py

Every number comes from the record (data/testbed/<run>.nc): its QMP poll series
(``sample_*``: time, status, ram.transferred, ram.remaining, ram.dirty-sync-count,
cpu-throttle-percentage, ram.dirty-pages-rate) and its final query-migrate statistics.
Nothing is simulated or invented; fields the testbed did not record per poll are left out
of the intermediate replies, as an older QEMU would.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
PAGE = 4096
RUNS = {
    "qmp": "r10000-h064-rand-bw064-dl0300-n0",  # QMP query-migrate JSON lines
    "domjobinfo": "r05000-h064-rand-bw064-dl0300-n0",  # virsh domjobinfo text
    "jobstats": "r10000-h064-rand-bw064-dl0100-n0",  # virDomainGetJobStats key=value
}


def load(run: str) -> xr.Dataset:
    with xr.open_dataset(ROOT / "data" / "testbed" / f"{run}.nc", engine="h5netcdf") as ds:
        return ds.load()


def v(ds, k):
    return ds[k].item()


def polls(ds):
    for i in range(ds.sizes["sample"]):
        yield (
            float(ds.sample_time[i]),
            str(ds.sample_status.values[i]),
            int(ds.sample_transferred[i]),
            int(ds.sample_remaining[i]),
            int(ds.sample_dirty_sync_count[i]),
            int(round(float(ds.sample_throttle[i]) * 100)),
            int(ds.sample_dirty_pages_rate[i]),
        )


def qmp_lines(ds) -> list[str]:
    """One QEMU 10 query-migrate reply per poll, with ``_t``; the last one completed."""
    out = []
    n = ds.sizes["sample"]
    setup_ms = int(round(v(ds, "setup_time") * 1000))
    for i, (t, status, tr, rem, dsc, thr, rate) in enumerate(polls(ds)):
        ram = {
            "transferred": tr,
            "remaining": rem,
            "total": int(v(ds, "ram_total")),
            "dirty-sync-count": dsc,
            "dirty-pages-rate": rate,
            "page-size": PAGE,
        }
        reply = {"status": status}
        if status != "setup":
            reply["setup-time"] = setup_ms
        if i == n - 1 and status == "completed":
            reply.update(
                {
                    "total-time": int(round(v(ds, "total_time") * 1000)),
                    "downtime": int(round(v(ds, "downtime") * 1000)),
                }
            )
            ram.update(
                {
                    "transferred": int(v(ds, "transferred")),
                    "remaining": 0,
                    "duplicate": int(v(ds, "ram_duplicate")),
                    "normal": int(v(ds, "ram_normal")),
                    "normal-bytes": int(v(ds, "ram_normal_bytes")),
                    "mbps": float(v(ds, "mbps")),
                    "dirty-sync-count": int(v(ds, "dirty_sync_count")),
                    "precopy-bytes": int(v(ds, "precopy_bytes")),
                    "downtime-bytes": int(v(ds, "downtime_bytes")),
                    "postcopy-bytes": int(v(ds, "postcopy_bytes")),
                    "postcopy-requests": 0,
                }
            )
        elif status != "setup":
            reply["total-time"] = int(round(t * 1000))
        if status != "setup":
            reply["ram"] = ram
        if thr:
            reply["cpu-throttle-percentage"] = thr
        reply["_t"] = round(t, 6)
        out.append(json.dumps(reply))
    return out


def capacity(b: float) -> str:
    """virsh's prettyCapacity with 3 decimals (B, KiB, MiB, GiB)."""
    for unit, div in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if b >= div:
            return f"{b / div:.3f} {unit}"
    return f"{b:.3f} B"


def domjobinfo_text(ds) -> str:
    """``virsh domjobinfo`` polled with each QMP reply, then ``virsh domjobinfo --completed``."""
    blocks = []
    total = float(v(ds, "ram_total"))
    for t, status, tr, rem, dsc, _thr, rate in polls(ds):
        if status == "setup":
            continue
        if status == "completed":
            tr = float(v(ds, "transferred"))
            lines = [
                "Job type:         Completed",
                "Operation:        Outgoing migration",
                f"Time elapsed:     {int(round(v(ds, 'total_time') * 1000)):<12d} ms",
                f"Data processed:   {capacity(tr)}",
                f"Data remaining:   {capacity(0)}",
                f"Data total:       {capacity(total)}",
                f"Memory processed: {capacity(tr)}",
                f"Memory remaining: {capacity(0)}",
                f"Memory total:     {capacity(total)}",
                f"Memory bandwidth: {float(v(ds, 'mbps')) * 1e6 / 8 / 2**20:.3f} MiB/s",
                f"Dirty rate:       {rate:<12d} pages/s",
                f"Page size:        {PAGE:<12d} bytes",
                f"Iteration:        {int(v(ds, 'dirty_sync_count')):<12d}",
                f"Postcopy requests: {0:<12d}",
                f"Constant pages:   {int(v(ds, 'ram_duplicate')):<12d}",
                f"Normal pages:     {int(v(ds, 'ram_normal')):<12d}",
                f"Normal data:      {capacity(float(v(ds, 'ram_normal_bytes')))}",
                f"Total downtime:   {int(round(v(ds, 'downtime') * 1000)):<12d} ms",
                f"Setup time:       {int(round(v(ds, 'setup_time') * 1000)):<12d} ms",
            ]
        else:
            lines = [
                "Job type:         Unbounded",
                "Operation:        Outgoing migration",
                f"Time elapsed:     {int(round(t * 1000)):<12d} ms",
                f"Data processed:   {capacity(tr)}",
                f"Data remaining:   {capacity(rem)}",
                f"Data total:       {capacity(total)}",
                f"Memory processed: {capacity(tr)}",
                f"Memory remaining: {capacity(rem)}",
                f"Memory total:     {capacity(total)}",
                f"Dirty rate:       {rate:<12d} pages/s",
                f"Page size:        {PAGE:<12d} bytes",
                f"Iteration:        {dsc:<12d}",
            ]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def jobstats_text(ds) -> str:
    """``virDomainGetJobStats`` typed parameters as ``key=value`` blocks (type 2 running, 3 done)."""
    blocks = []
    total = int(v(ds, "ram_total"))
    for t, status, tr, rem, dsc, _thr, rate in polls(ds):
        if status == "setup":
            continue
        if status == "completed":
            d = {
                "type": 3,
                "operation": 2,
                "time_elapsed": int(round(v(ds, "total_time") * 1000)),
                "downtime": int(round(v(ds, "downtime") * 1000)),
                "setup_time": int(round(v(ds, "setup_time") * 1000)),
                "data_total": total,
                "data_processed": int(v(ds, "transferred")),
                "data_remaining": 0,
                "memory_total": total,
                "memory_processed": int(v(ds, "transferred")),
                "memory_remaining": 0,
                "memory_constant": int(v(ds, "ram_duplicate")),
                "memory_normal": int(v(ds, "ram_normal")),
                "memory_normal_bytes": int(v(ds, "ram_normal_bytes")),
                "memory_bps": int(float(v(ds, "mbps")) * 1e6 / 8),
                "memory_dirty_rate": rate,
                "memory_page_size": PAGE,
                "memory_iteration": int(v(ds, "dirty_sync_count")),
                "memory_postcopy_requests": 0,
            }
        else:
            d = {
                "type": 2,
                "operation": 2,
                "time_elapsed": int(round(t * 1000)),
                "data_total": total,
                "data_processed": tr,
                "data_remaining": rem,
                "memory_total": total,
                "memory_processed": tr,
                "memory_remaining": rem,
                "memory_dirty_rate": rate,
                "memory_page_size": PAGE,
                "memory_iteration": dsc,
            }
        blocks.append("\n".join(f"{k}={val}" for k, val in d.items()))
    return "\n\n".join(blocks) + "\n"


def main() -> None:
    (HERE / f"qmp_{RUNS['qmp']}.jsonl").write_text("\n".join(qmp_lines(load(RUNS["qmp"]))) + "\n")
    (HERE / f"domjobinfo_{RUNS['domjobinfo']}.txt").write_text(domjobinfo_text(load(RUNS["domjobinfo"])))
    (HERE / f"jobstats_{RUNS['jobstats']}.txt").write_text(jobstats_text(load(RUNS["jobstats"])))
    for f in sorted(HERE.glob("*_r*")):
        print(f"wrote {f.relative_to(ROOT)}")


if __name__ == "__main__":
    np.set_printoptions(suppress=True)
    main()
