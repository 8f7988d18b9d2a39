"""Host CPU resources that bound migration work done in software."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import check_range
from .checks import check_fields


@dataclass(frozen=True)
class Host:
    """CPU throughput of the migration helper threads.

    ``zero_scan_gib_s``: how fast the sender checks pages for all-zero content (QEMU
    ``buffer_is_zero``, vectorised: several GiB/s per core; 8 is **ours**, illustrative).
    ``compress_mib_s_per_core`` and ``spare_cores``: throughput of a fast compressor and the
    cores it may use (Hyper-V compression uses idle host CPU); 500 MiB/s is LZ4's "> 500 MB/s
    per core" (LZ4's README; its lzbench table: 780 MB/s, v1.9.0 on a Core i7-9700K) —
    **secondary**, conservative.  ``encrypt_gib_s_per_core``: AES-GCM with AES-NI; 1.5 GiB/s is
    about 2 cycles/byte at 3 GHz, between Intel's 2.8 cycles/byte of 2010 (Gopal et al.,
    "Optimized Galois-Counter-Mode Implementation on Intel Architecture Processors", white
    paper 324194, Core i5 650) and the 0.64 Drucker, Gueron & Krasnov report on later Intel
    cores ("Making AES great again", 2018) — **ours**, within the published range.

    NUMA, memory errors and checksums (issue 7; see :mod:`lmtoolkit.model.numa` and
    :mod:`lmtoolkit.model.reliability` for the formulas and sources): ``src_numa_nodes`` /
    ``dst_numa_nodes`` nodes of ``numa_node_gib`` (``dst_numa_node_gib``; null = same) each;
    ``numa_spanning`` lets a VM larger than one node run across nodes (Hyper-V
    ``Set-VMHost -NumaSpanningEnabled``); ``numa_remote_latency_ratio`` is remote/local memory
    latency.  ``ecc``: SECDED ECC memory; ``bit_error_rate``: probability that a copied bit
    flips on its way (per bit moved); ``hash_gib_s_per_core``: page checksum throughput
    (``policy.verify_checksums``).
    """

    cores: int = 16
    spare_cores: float = 4.0
    zero_scan_gib_s: float = 8.0
    compress_mib_s_per_core: float = 500.0
    encrypt_gib_s_per_core: float = 1.5
    src_numa_nodes: int = 2
    dst_numa_nodes: int | None = None
    numa_node_gib: float = 256.0
    dst_numa_node_gib: float | None = None
    numa_spanning: bool = True
    numa_remote_latency_ratio: float = 1.6
    ecc: bool = True
    bit_error_rate: float = 1e-15
    hash_gib_s_per_core: float = 4.0

    def __post_init__(self):
        check_fields(self)
        check_range("cores", self.cores, 1, 100000)
        check_range("spare_cores", self.spare_cores, 0, self.cores)
        check_range("zero_scan_gib_s", self.zero_scan_gib_s, 0, None, lo_open=True)
        check_range("compress_mib_s_per_core", self.compress_mib_s_per_core, 0, None, lo_open=True)
        check_range("encrypt_gib_s_per_core", self.encrypt_gib_s_per_core, 0, None, lo_open=True)
        from .numa import check_host_numa
        from .reliability import check_host_reliability

        check_host_numa(self)
        check_host_reliability(self)

    # -- NUMA (lmtoolkit.model.numa) -------------------------------------------------------
    @property
    def dst_nodes(self) -> int:
        return self.src_numa_nodes if self.dst_numa_nodes is None else self.dst_numa_nodes

    @property
    def dst_node_gib(self) -> float:
        return self.numa_node_gib if self.dst_numa_node_gib is None else self.dst_numa_node_gib
