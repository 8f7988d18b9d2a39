"""Host CPU resources that bound migration work done in software."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import check_range


@dataclass(frozen=True)
class Host:
    """CPU throughput of the migration helper threads.

    ``zero_scan_gib_s``: how fast the sender checks pages for all-zero content (QEMU
    ``buffer_is_zero``, vectorised: several GiB/s per core).  ``compress_mib_s_per_core`` and
    ``spare_cores``: throughput of a fast compressor (LZ4-class ≈ 500 MiB/s per core) and
    the cores it may use (Hyper-V compression uses idle host CPU).  ``encrypt_gib_s_per_core``:
    AES-GCM with AES-NI ≈ 1–2 GiB/s per core.
    """

    cores: int = 16
    spare_cores: float = 4.0
    zero_scan_gib_s: float = 8.0
    compress_mib_s_per_core: float = 500.0
    encrypt_gib_s_per_core: float = 1.5

    def __post_init__(self):
        check_range("cores", self.cores, 1, 100000)
        check_range("spare_cores", self.spare_cores, 0, self.cores)
        check_range("zero_scan_gib_s", self.zero_scan_gib_s, 0, None, lo_open=True)
        check_range("compress_mib_s_per_core", self.compress_mib_s_per_core, 0, None, lo_open=True)
        check_range("encrypt_gib_s_per_core", self.encrypt_gib_s_per_core, 0, None, lo_open=True)
