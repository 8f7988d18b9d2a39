"""VM memory: size, page size, zero pages and content compressibility."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError, check_choice, check_range
from .checks import check_fields

#: where the zero pages lie (:class:`VM`)
ZERO_LAYOUTS = ("spread", "linux")
#: sizeof(struct page) on 64-bit Linux (include/linux/mm_types.h), bytes
STRUCT_PAGE_BYTES = 64

GIB = 1024**3
MIB = 1024**2
KIB = 1024
#: the largest base (not huge) page, KiB: arm64 and ppc64 kernels run 64 KiB pages.  Larger pages
#: are huge pages, and guest RAM backed by them is a whole number of them (:class:`VM`)
BASE_PAGE_MAX_KIB = 64


@dataclass(frozen=True)
class VM:
    """Guest memory as the migration sees it.

    ``zero_fraction`` is the share of pages whose content is all zero when the migration
    starts: QEMU (``migration/ram.c``, ``save_zero_page``), Xen and others send such a page
    as a header-only marker.  A page the workload writes is no longer zero.
    ``compressibility`` is the fraction of a non-zero page's bytes a general-purpose
    compressor removes (0 = incompressible, 0.6 = compresses to 40 %); used by compressing
    transports.  ``device_state_mib`` is the CPU and device state sent during the downtime.
    ``page_size_kib`` is a power of two from 1 to 1048576 KiB (4 = x86 base pages,
    2048 = 2 MiB huge pages, 1048576 = 1 GiB huge pages).

    ``memory_gib`` is simulated as whole pages (:attr:`pages`).  With huge pages (larger than
    :data:`BASE_PAGE_MAX_KIB`) it must be a whole number of them: QEMU backs such a guest with a
    hugetlbfs or memfd memory backend, which refuses any other size (10.0.13
    ``backends/hostmem.c: host_memory_backend_memory_complete``: "backend '%s' memory size must
    be multiple of %s", for the ``aligned`` backends, ``hostmem-file.c``/``hostmem-memfd.c``);
    ``memory_gib=1.9`` with 1 GiB pages had run as a 1 GiB guest.  With base pages a remainder
    of less than a page (at most 64 KiB, 2.4 KiB for 1.9 GiB in 4 KiB pages) is dropped, as
    QEMU rounds plain RAM to whole host pages (``system/physmem.c: qemu_ram_alloc_internal``
    rounds the size up to ``qemu_real_host_page_size()``, after ``hw/core/machine.c:
    machine_set_mem`` rounded it up to 8 KiB) — up where the model rounds down, by less than a
    page either way; refusing it would refuse every fractional GiB (0.3, 1.9) with 4 KiB pages.

    ``zero_layout`` says where the zero pages lie in guest-physical order, which the send
    order follows (QEMU, Xen and the others scan RAM by address):

    * ``spread`` (default): scattered evenly over the pages the workload does not write;
    * ``linux``: a Linux guest whose free memory was never touched: the data it holds is at
      the bottom of RAM and in a tail at the very top, the zero pages in between.  The tail
      is the ``struct page`` array, 64 bytes per page (``include/linux/mm_types.h``), which
      memblock allocates from the top of RAM (``mm/memblock.c: memblock_find_in_range_node``
      searches top-down unless ``memblock_bottom_up()``; ``mm/sparse.c`` takes the memmap
      from it): memory/64 with 4 KiB pages (:attr:`top_nonzero_pages`).  The zero pages are
      the untouched pages just below it.  Measured on the testbed (512 MiB guest, QEMU's
      remaining bytes every 100 ms): ~265 MiB sent at the cap, 240 MiB of zero pages scanned
      in jumps, then a ~6 MiB tail that is what the guest has left at its switchover.
    """

    memory_gib: float = 1.0
    page_size_kib: int = 4
    zero_fraction: float = 0.0
    compressibility: float = 0.5
    vcpus: int = 2
    device_state_mib: float = 0.25
    zero_layout: str = "spread"

    def __post_init__(self):
        check_fields(self)
        check_range("memory_gib", self.memory_gib, 0, 65536, lo_open=True)
        check_range("page_size_kib", self.page_size_kib, 1, 1024 * 1024)
        size = int(self.page_size_kib)
        if size & (size - 1):
            raise ConfigError(
                "page_size_kib", self.page_size_kib, "must be a power of two from 1 to 1048576 (KiB)"
            )
        check_range("zero_fraction", self.zero_fraction, 0, 1)
        check_range("compressibility", self.compressibility, 0, 1, hi_open=True)
        check_range("vcpus", self.vcpus, 1, 4096)
        check_range("device_state_mib", self.device_state_mib, 0, 65_536)  # (a GPU's state is GiBs)
        check_choice("zero_layout", self.zero_layout, ZERO_LAYOUTS)
        if self.pages < 1:
            check_range("memory_gib", self.memory_gib, self.page_bytes / GIB, 65536)
        if size > BASE_PAGE_MAX_KIB and int(self.memory_gib * GIB) % self.page_bytes:
            lo, hi = self.pages * self.page_bytes / GIB, (self.pages + 1) * self.page_bytes / GIB
            raise ConfigError(
                "memory_gib",
                self.memory_gib,
                "",
                message=(
                    f"memory_gib={self.memory_gib} is not allowed with vm.page_size_kib={size}: it is "
                    f"{self.memory_gib * GIB / self.page_bytes:.6g} huge pages and would be simulated as "
                    f"{self.pages} ({lo:.10g} GiB); memory backed by huge pages is a whole number of them "
                    f'(QEMU backends/hostmem.c: "memory size must be multiple of" the page size): '
                    f"use {lo:.10g} or {hi:.10g}"
                ),
            )

    @property
    def page_bytes(self) -> int:
        return int(self.page_size_kib * KIB)

    @property
    def memory_bytes(self) -> int:
        return self.pages * self.page_bytes

    @property
    def pages(self) -> int:
        """Number of guest pages (memory rounded down to whole pages: less than a base page is
        dropped, a huge-page guest is a whole number of pages, see the class doc)."""
        return int(self.memory_gib * GIB) // self.page_bytes

    @property
    def zero_pages(self) -> int:
        return int(round(self.zero_fraction * self.pages))

    @property
    def top_nonzero_pages(self) -> int:
        """Pages of data at the top of RAM above the zero pages (``zero_layout``): the
        ``struct page`` array, ``STRUCT_PAGE_BYTES`` per page; 0 when ``spread``."""
        if self.zero_layout != "linux":
            return 0
        return min(self.pages * STRUCT_PAGE_BYTES // self.page_bytes, self.nonzero_pages)

    @property
    def nonzero_pages(self) -> int:
        return self.pages - self.zero_pages

    @property
    def device_state_bytes(self) -> int:
        return int(self.device_state_mib * MIB)
