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
#: the page a dirty log tracks in guest RAM backed by huge pages, KiB: x86's 4 KiB frame
#: (QEMU's ``TARGET_PAGE_SIZE``, KVM's ``PAGE_SIZE`` gfn; see :func:`tracked_page_kib`)
DIRTY_LOG_PAGE_KIB = 4
#: largest guest (GiB) and vCPU count accepted (vm.memory_gib, vm.vcpus)
MAX_MEMORY_GIB = 65536
MAX_VCPUS = 4096


def tracked_page_kib(page_size_kib: int) -> int:
    """KiB of the pages a pre-copy migration of guest RAM of ``page_size_kib`` pages tracks and
    sends: the page itself for base pages (up to :data:`BASE_PAGE_MAX_KIB`), and
    :data:`DIRTY_LOG_PAGE_KIB` for huge pages, whose writes the dirty log sees 4 KiB at a time.

    Sources: KVM logs dirty guest frames of ``PAGE_SIZE`` (one bit per gfn, ``virt/kvm/kvm_main.c:
    mark_page_dirty_in_slot``) and maps huge pages 4 KiB at a time while logging is on: linux
    ``arch/x86/kvm/mmu/mmu.c: kvm_mmu_hugepage_adjust`` maps no huge page in a slot with
    ``kvm_slot_dirty_track_enabled``, and ``arch/x86/kvm/x86.c: kvm_mmu_slot_apply_flags``
    splits the slot's huge mappings when logging starts (``eager_page_split``:
    ``kvm_mmu_slot_try_split_huge_pages(kvm, new, PG_LEVEL_4K)``) and recovers them when it
    stops, "now that KVM does not have to track guest writes at 4KiB granularity".  QEMU's migration bitmap has a bit per target page
    (``migration/ram.c``, ``TARGET_PAGE_BITS``; 4 KiB on x86), and ``ram_save_host_page`` walks
    the target pages of a host (huge) page and sends "Only dirty target pages"
    (``migration_bitmap_clear_dirty`` per target page, then ``ram_save_target_page``), each with
    its own header and its own zero test (``save_zero_page``: ``buffer_is_zero(p,
    TARGET_PAGE_SIZE)``).  Xen's log-dirty bitmap and save loop work in 4 KiB frames (pfns).
    Whole huge pages move only in post-copy (:attr:`VM.pages_per_host_page`).  A base page above
    4 KiB (arm64's or ppc64's 64 KiB kernels) is the host kernel's own page, which KVM logs
    whole: it stays the tracked page."""
    size = int(page_size_kib)
    return size if size <= BASE_PAGE_MAX_KIB else DIRTY_LOG_PAGE_KIB


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
    2048 = 2 MiB huge pages, 1048576 = 1 GiB huge pages): the pages backing guest RAM.

    **Pages the migration sees.**  :attr:`pages` and :attr:`page_bytes` are the pages a
    migration tracks in its dirty bitmap and sends in pre-copy — and the pages the workload's
    writes fall on (``workload.dirty_rate_pages_s`` counts writes to them): the page itself
    for base pages, 4 KiB for huge pages (:func:`tracked_page_kib`: KVM logs and QEMU sends
    target pages, ``ram_save_host_page``).  :attr:`host_page_bytes` and :attr:`host_pages`
    are the huge pages, :attr:`pages_per_host_page` of those in each: they set how memory is
    rounded (below) and post-copy's unit — QEMU marks a huge page wholly dirty when any of its
    target pages is (``migration/ram.c: postcopy_chunk_hostpages_pass``), and the destination
    places, and a fault waits for, whole huge pages (``postcopy-ram.c: postcopy_request_page``
    rounds the faulting address down to ``qemu_ram_pagesize``; ``ram_load_postcopy`` places a
    host page once all its target pages arrived, ``postcopy_place_page``).

    ``memory_gib`` is simulated as whole pages (:attr:`host_pages`).  With huge pages (larger than
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
        check_range("page_size_kib", self.page_size_kib, 1, 1024 * 1024)
        size = int(self.page_size_kib)
        if size & (size - 1):
            raise ConfigError(
                "page_size_kib", self.page_size_kib, "must be a power of two from 1 to 1048576 (KiB)"
            )
        self._check_memory()
        check_range("zero_fraction", self.zero_fraction, 0, 1)
        check_range("compressibility", self.compressibility, 0, 1, hi_open=True)
        check_range("vcpus", self.vcpus, 1, MAX_VCPUS)
        check_range("device_state_mib", self.device_state_mib, 0, 65_536)  # (a GPU's state is GiBs)
        check_choice("zero_layout", self.zero_layout, ZERO_LAYOUTS)
        if size > BASE_PAGE_MAX_KIB and int(self.memory_gib * GIB) % self.host_page_bytes:
            hp, hb = self.host_pages, self.host_page_bytes
            lo, hi = hp * hb / GIB, (hp + 1) * hb / GIB
            raise ConfigError(
                "memory_gib",
                self.memory_gib,
                "",
                message=(
                    f"memory_gib={self.memory_gib} is not allowed with vm.page_size_kib={size}: it is "
                    f"{self.memory_gib * GIB / hb:.6g} huge pages and would be simulated as "
                    f"{hp} ({lo:.10g} GiB); memory backed by huge pages is a whole number of them "
                    f'(QEMU backends/hostmem.c: "memory size must be multiple of" the page size): '
                    f"use {lo:.10g} or {hi:.10g}"
                ),
            )

    def _check_memory(self) -> None:
        """``memory_gib`` in [one page, :data:`MAX_MEMORY_GIB`], one message for every refused
        value (-1 said "(0, 65536]" and 1e-9 "[3.8147e-06, 65536]": a guest under one page has
        no page to migrate)."""
        lo, note = self.host_page_bytes / GIB, f" GiB: at least one {self.page_size_kib} KiB page"
        check_range("memory_gib", self.memory_gib, lo, MAX_MEMORY_GIB, note=note)

    @property
    def host_page_bytes(self) -> int:
        """Bytes of a page backing guest RAM (``page_size_kib``; a huge page above 64 KiB)."""
        return int(self.page_size_kib * KIB)

    @property
    def host_pages(self) -> int:
        """Pages backing guest RAM (memory rounded down to whole pages: less than a base page is
        dropped, a huge-page guest is a whole number of pages, see the class doc)."""
        return int(self.memory_gib * GIB) // self.host_page_bytes

    @property
    def page_bytes(self) -> int:
        """Bytes of a page the migration tracks and sends in pre-copy (:func:`tracked_page_kib`:
        ``page_size_kib`` for base pages, 4 KiB for huge pages)."""
        return int(tracked_page_kib(self.page_size_kib) * KIB)

    @property
    def pages_per_host_page(self) -> int:
        """Tracked pages in a host page: 1 for base pages, 512 for 2 MiB huge pages (QEMU's
        ``host_ratio`` in ``postcopy_chunk_hostpages_pass``)."""
        return self.host_page_bytes // self.page_bytes

    @property
    def memory_bytes(self) -> int:
        return self.host_pages * self.host_page_bytes

    @property
    def pages(self) -> int:
        """Number of pages the migration tracks (memory in whole host pages, see
        :attr:`host_pages`, counted in :attr:`page_bytes`)."""
        return self.host_pages * self.pages_per_host_page

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
