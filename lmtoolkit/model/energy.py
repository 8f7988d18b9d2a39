"""What a migration costs in energy, and the guest work it holds back (issue 16).

Computed *after* the engine, from the fields every migration record has (both engines give
the same ones, so both give the same energy) plus constants of the scenario and the ``power``
config group.  Nothing here knows about Hydra, xarray or plotting; everything is vectorised
over numpy columns (a 100k-point fluid sweep pays a few array operations).

Model (per migration; J, W, s, bytes)
-------------------------------------
* **Host power is linear in CPU work** (Fan, Weber, Barroso, "Power provisioning for a
  warehouse-sized computer", ISCA 2007: ``P(u) = P_idle + (P_busy - P_idle) u``).  So the
  energy a migration adds to a host is ``core_w`` x the CPU-seconds of its work, with
  ``core_w = (peak_w - idle_w) / host.cores`` unless ``power.core_w`` is set.
* **CPU work on the source**: the network stack for every byte sent (``8 / (stack_gbit_s_per_core
  x 1e9)`` CPU-s per byte; the classic rule of thumb is 1 Hz of CPU per bit/s of TCP,
  Foong et al., "TCP performance re-visited", ISPASS 2003), the zero-page scan of every
  page sent (``host.zero_scan_gib_s``, QEMU ``buffer_is_zero``: one core's rate, however
  many threads share the scan — QEMU's multifd channels; none, and no zero pages, where the
  policy sends them whole: ``detects_zero_pages`` false, Xen, QEMU's
  ``zero_page_detection=none``), the policy's
  per-page sender work — compression (Hyper-V-like ``transport: compression``) or
  encryption (Encrypted vMotion) — read through the policy hooks ``nonzero_cpu_s`` / ``nonzero_wire_bytes``
  (CPU-seconds = the hook's time with one core's throughputs, ``Scenario.context(one_core=
  True)``: the work, the same however many cores share it — ``host.spare_cores`` sets how
  long it takes, not how much it costs), and page checksums
  (``policy.verify_checksums``, ``host.hash_gib_s_per_core``; :mod:`.reliability`): each
  transmission of a verified page, re-sends included, hashed once per host at one core's
  rate — :func:`.reliability.checksum_cpu_s`, the computation behind the record's
  ``checksum_cpu_time`` (both hosts), so energy charges ``core_w x checksum_cpu_time``.
* **CPU work on the destination**: the same network stack and checksums; decompression at
  ``decompress_speedup`` x the compressor's speed (where the policy compresses, hook
  ``compresses_pages``; LZ4's README benchmark: 780 MB/s compression, 4970 MB/s decompression per
  core, ratio 6.4), decryption at the encryption's speed (AES-GCM runs the same CTR and GHASH
  passes both ways: NIST SP 800-38D); one post-copy fault handled costs
  ``policy.fault_overhead_us`` of CPU (userfaultfd wake-up, request, placement).
* **Network**: every bit on the link crosses two NICs and one switch port:
  ``bits x (2 nic_nj_per_bit + switch_nj_per_bit)``.
* **Duration**: ``idle_share`` of each host's ``idle_w`` for the migration's ``total_time``
  (0: the migration's own, incremental energy, as Liu et al. measured it; 1: both hosts are
  charged in full while the migration runs); ``setup_j`` per migration, half per host.
* **The guest's lost work** ``guest_lost_cpu_s``: vCPU-seconds the guest could not run,
  from throttling (auto-converge, SDPS, CPU capping) and post-copy fault stalls —
  ``guest_slowdown x (running time) x vcpus``, the engines' own accounting
  (:func:`lmtoolkit.engine.common.slowdown`).  An upper bound on lost work for a guest that
  would not have kept every vCPU busy.  It is *not* energy: the guest's computation costs the
  same whenever and wherever it runs, so throttling and stalls defer it rather than add to it
  (what they change in energy — fewer bytes, a shorter or longer migration — is counted).

Limits: XBZRLE's encoding CPU and its cache-hit pages are not in the records (the page count
is estimated from bytes, so delta-encoded pages count by their wire size); RDMA transports pay
the same stack cost per byte as TCP; an evacuation's per-VM records hold time, bytes and
downtime only, so its per-VM energy has no fault or throttle terms.

Reference model: Liu et al., "Performance and energy modeling for live migration of virtual
machines", HPDC 2011 (and Cluster Computing 16(2), 2013): ``E_mig = alpha V_mig + beta`` with
``V_mig`` the data moved (MB) — :func:`liu2011_energy`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, check_range
from .checks import check_fields
from .reliability import checksum_cpu_s

GIB = 1024**3
#: Liu et al. report V_mig in MB; read here as MiB (2^20 bytes) — their paper does not say
#: which, and page-granular memory sizes are binary.
LIU_MB = 2**20
#: Liu et al. (HPDC 2011), E_mig = alpha V_mig + beta, fitted on their Xen testbed (Gigabit
#: Ethernet, servers metered with a Watts up Pro meter, five workloads).  These two values are
#: the ones the paper is quoted with (0.512 J/MB, 20.165 J).  The paper's own text was not
#: available here; an independent implementation uses the same two values (repository
#: robertomeroni/vm_allocator, ``src/weights.py``: migration energy "coefficient" 512 J per GB,
#: "constant" 20.165 J) — two quotations agree, but check Liu et al. 2011 before citing them.
LIU2011_ALPHA_J_PER_MB = 0.512
LIU2011_BETA_J = 20.165

#: Dataset variables of a migration: name -> (units, long name)
VARIABLES = {
    "energy_source": ("J", "energy the migration costs the source host"),
    "energy_destination": ("J", "energy the migration costs the destination host"),
    "energy_network": ("J", "energy of the migration's bits in NICs and switch"),
    "energy_total": ("J", "migration energy: source + destination + network"),
    "guest_lost_cpu_s": ("s", "vCPU time the guest lost to throttling and post-copy fault stalls"),
}


@dataclass(frozen=True)
class Power:
    """The ``power`` config group (units in the names; see ``configs/power/*.yaml`` for the
    sources of each preset's numbers).

    ``idle_w`` / ``peak_w``: one host's wall power idle and at 100 % CPU (W).  ``core_w``:
    dynamic power of one busy core (W); null = ``(peak_w - idle_w) / host.cores``.
    ``nic_nj_per_bit`` / ``switch_nj_per_bit``: energy per bit in each NIC and in the switch.
    ``stack_gbit_s_per_core``: network-stack throughput of one core (per side).
    ``decompress_speedup``: decompression speed / compression speed.  ``idle_share``: share
    of each host's idle power charged while the migration runs (0..1).  ``setup_j``: fixed
    energy per migration (connection set-up, destination VM creation), split between hosts.
    """

    idle_w: float = 100.0
    peak_w: float = 400.0
    core_w: float | None = None
    nic_nj_per_bit: float = 0.5
    switch_nj_per_bit: float = 0.3
    stack_gbit_s_per_core: float = 10.0
    decompress_speedup: float = 6.4
    idle_share: float = 0.0
    setup_j: float = 0.0

    def __post_init__(self):
        check_fields(self)
        check_range("idle_w", self.idle_w, 0, 1e6)  # (W: a megawatt host is no host)
        check_range("peak_w", self.peak_w, 0, 1e6)
        if self.peak_w < self.idle_w:
            raise ConfigError("peak_w", self.peak_w, f"at least power.idle_w ({self.idle_w:g} W)")
        if self.core_w is not None:
            check_range("core_w", self.core_w, 0, 1e4)
        check_range("nic_nj_per_bit", self.nic_nj_per_bit, 0, 1e6)
        check_range("switch_nj_per_bit", self.switch_nj_per_bit, 0, 1e6)
        check_range("stack_gbit_s_per_core", self.stack_gbit_s_per_core, 0, None, lo_open=True)
        check_range("decompress_speedup", self.decompress_speedup, 0, None, lo_open=True)
        check_range("idle_share", self.idle_share, 0, 1)
        check_range("setup_j", self.setup_j, 0, 1e9)

    def busy_core_w(self, cores) -> float:
        """Dynamic power of one busy core (W) on a host of ``cores`` cores."""
        return float(self.core_w) if self.core_w is not None else (self.peak_w - self.idle_w) / cores


def page_constants(scn) -> dict[str, float]:
    """What :func:`pages_sent` and the hashing CPU (:func:`~.reliability.checksum_cpu_s`) need
    of a scenario (floats): also read by :mod:`lmtoolkit.engine.beyond` for the record's
    ``checksum_cpu_time`` and ``retransmitted``, so that the record and the energy count the
    same pages and the same hashing."""
    from ..engine.rule_checks import checked  # (here: the model package is imported by the engines)
    from ..policies.base import State  # a blank state to evaluate the policy's hooks

    pol, host, vm = checked(scn.policy), scn.host, scn.vm  # a plug-in's answers checked
    verify = bool(pol.verify_checksums)
    # A policy that does not detect zero pages (Xen) sends them whole, like any page, and
    # does not scan for them: no zero pages among its bytes, no zero-scan CPU.
    detects = bool(pol.detects_zero_pages)
    return {
        "page_bytes": float(vm.page_bytes),
        # one transmission of a non-zero page (the bytes count the re-sends: pages_sent
        # counts transmissions)
        "nonzero_wire_bytes": float(pol.nonzero_wire_bytes(State(()), scn.context())),
        "zero_wire_bytes": float(pol.zero_wire_bytes(State(()), scn.context())),
        "zero_fraction": float(vm.zero_fraction) if detects else 0.0,
        "device_bytes": float(vm.device_state_bytes),
        "memory_bytes": float(vm.memory_bytes),
        "hash_cpu_s_per_byte": 1.0 / (host.hash_gib_s_per_core * GIB) if verify else 0.0,
    }


def scenario_constants(scn, power: Power, idle_share: float | None = None) -> dict[str, float]:
    """Per-scenario inputs of :func:`migration_energy` (floats).  ``idle_share`` overrides
    ``power.idle_share`` (evacuations charge the hosts' idle power once, not per VM)."""
    from ..engine.rule_checks import checked  # (here: the model package is imported by the engines)
    from ..policies.base import State  # a blank state to evaluate the policy's hooks

    # the policy's answers checked as the engines check them: a negative nonzero_cpu_s was
    # taken as is (a migration of -16 kJ)
    pol, host, vm = checked(scn.policy), scn.host, scn.vm
    st = State(())
    # The sender's work per page: the hook's time at one core's throughput, whatever the
    # number of cores that share it (a compressor on a quarter of a core takes 4x as long for
    # the same work).
    send = float(pol.nonzero_cpu_s(st, scn.context(one_core=True)))
    # The receiver undoes it: decompression decompress_speedup x faster than compression,
    # decryption at the cipher's speed — by what the policy does, not by the bytes it sends
    # (an incompressible page still goes through the compressor and the decompressor).
    recv = send / power.decompress_speedup if bool(pol.compresses_pages()) else send
    detects = bool(pol.detects_zero_pages)
    return {
        **page_constants(scn),
        "send_cpu_s_per_page": send,
        "recv_cpu_s_per_page": recv,
        "scan_cpu_s_per_byte": 1.0 / (host.zero_scan_gib_s * GIB) if detects else 0.0,
        "stack_cpu_s_per_byte": 8.0 / (power.stack_gbit_s_per_core * 1e9),
        "fault_cpu_s": float(pol.fault_overhead_s()),
        "core_w": power.busy_core_w(host.cores),
        "net_j_per_byte": 8e-9 * (2.0 * power.nic_nj_per_bit + power.switch_nj_per_bit),
        "idle_w": float(power.idle_w),
        "idle_share": float(power.idle_share if idle_share is None else idle_share),
        "setup_j": float(power.setup_j),
        "vcpus": float(vm.vcpus),
    }


def stack_constants(consts: list[dict]) -> dict[str, np.ndarray]:
    """Per-scenario constants (a list of dicts) as one dict of arrays."""
    return {k: np.array([c[k] for c in consts], dtype=float) for k in consts[0]}


def pages_sent(rec: dict, c: dict):
    """(non-zero, zero) pages the migration moved, from its bytes: zero pages are the
    ``zero_fraction`` of memory (sent once, as markers; none for a policy that does not
    detect them, :func:`page_constants` gives it 0); the rest of the page bytes are
    non-zero page transmissions at their wire size — a page re-sent after a checksum
    mismatch counts each time (disk bytes and the device state left out)."""
    mem = np.maximum(
        np.asarray(rec["transferred_bytes"], float)
        - np.nan_to_num(np.asarray(rec.get("storage_bytes", 0.0), float))
        - c["device_bytes"],
        0.0,
    )
    zero = np.minimum(
        c["zero_fraction"] * np.asarray(rec["memory_bytes"], float) / c["page_bytes"],
        mem / np.maximum(c["zero_wire_bytes"], 1e-300),
    )
    nonzero = np.maximum(mem - zero * c["zero_wire_bytes"], 0.0) / c["nonzero_wire_bytes"]
    return nonzero, zero


def guest_lost_cpu_s(rec: dict, c: dict):
    """vCPU-seconds the guest lost (throttling, post-copy stalls): the engines' slowdown share
    of the time the guest ran during the memory migration, times its vCPUs."""
    total = np.asarray(rec["total_time_s"], float)
    running = (
        total
        - np.nan_to_num(np.asarray(rec["downtime_s"], float))
        - np.nan_to_num(np.asarray(rec.get("storage_time_s", 0.0), float))
    )
    return np.asarray(rec["guest_slowdown"], float) * np.maximum(running, 0.0) * c["vcpus"]


def migration_energy(rec: dict, c: dict) -> dict[str, np.ndarray]:
    """Energy (J) and lost guest work (vCPU-s) of migrations, vectorised.

    ``rec``: record fields as arrays (``total_time_s``, ``downtime_s``, ``transferred_bytes``,
    ``memory_bytes``, ``postcopy_faults``, ``guest_slowdown``, optionally ``storage_bytes``
    and ``storage_time_s``); ``c``: :func:`scenario_constants` (floats or arrays).  Returns
    the :data:`VARIABLES`.
    """
    nbytes = np.asarray(rec["transferred_bytes"], float)
    total = np.asarray(rec["total_time_s"], float)
    faults = np.nan_to_num(np.asarray(rec.get("postcopy_faults", 0.0), float))
    nz, z = pages_sent(rec, c)
    scanned = (nz + z) * c["page_bytes"]
    # each host hashes every verified transmission once (the record's checksum_cpu_time is
    # both hosts' of the same computation: lmtoolkit.engine.beyond)
    hashed = checksum_cpu_s(nz, c["page_bytes"], c["hash_cpu_s_per_byte"])
    stack = nbytes * c["stack_cpu_s_per_byte"]
    src_cpu = stack + scanned * c["scan_cpu_s_per_byte"] + nz * c["send_cpu_s_per_page"] + hashed
    dst_cpu = stack + nz * c["recv_cpu_s_per_page"] + hashed + faults * c["fault_cpu_s"]
    held = c["idle_share"] * c["idle_w"] * total + 0.5 * c["setup_j"]
    src = c["core_w"] * src_cpu + held
    dst = c["core_w"] * dst_cpu + held
    net = nbytes * c["net_j_per_byte"]
    return {
        "energy_source": src,
        "energy_destination": dst,
        "energy_network": net,
        "energy_total": src + dst + net,
        "guest_lost_cpu_s": guest_lost_cpu_s(rec, c),
    }


def hosts_idle_energy(idle_w, hosts: int, until_s):
    """Idle energy (J) of ``hosts`` hosts kept on until ``until_s`` (an evacuation's makespan)."""
    return np.asarray(idle_w, float) * hosts * np.asarray(until_s, float)


# -- the reference model ------------------------------------------------------------------------
def liu2011_energy(transferred_bytes, alpha_j_per_mb=LIU2011_ALPHA_J_PER_MB, beta_j=LIU2011_BETA_J):
    """Liu et al. (HPDC 2011): migration energy linear in the data moved,
    ``E_mig = alpha V_mig + beta`` (J; ``V_mig`` in MB, read as :data:`LIU_MB` bytes)."""
    return alpha_j_per_mb * np.asarray(transferred_bytes, float) / LIU_MB + beta_j


def fit_linear(transferred_bytes, energy_j) -> tuple[float, float]:
    """Least-squares ``(alpha J/MB, beta J)`` of ``energy = alpha V + beta`` — how Liu et al.
    derived their coefficients from measured migrations."""
    v = np.asarray(transferred_bytes, float).ravel() / LIU_MB
    e = np.asarray(energy_j, float).ravel()
    ok = np.isfinite(v) & np.isfinite(e)
    alpha, beta = np.polyfit(v[ok], e[ok], 1)
    return float(alpha), float(beta)


__all__ = [
    "Power",
    "VARIABLES",
    "scenario_constants",
    "stack_constants",
    "page_constants",
    "pages_sent",
    "migration_energy",
    "guest_lost_cpu_s",
    "hosts_idle_energy",
    "liu2011_energy",
    "fit_linear",
    "LIU2011_ALPHA_J_PER_MB",
    "LIU2011_BETA_J",
]
