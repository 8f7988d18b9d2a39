/*
 * wp_shim.so — LD_PRELOAD helper for `lmtk trace -- COMMAND`.
 *
 * A userfaultfd belongs to the process (mm) that creates it, so the write-protection that
 * makes PAGEMAP_SCAN report written pages has to be armed inside the traced process.  This
 * library's constructor creates a userfaultfd with UFFD_FEATURE_WP_ASYNC (Linux >= 6.7:
 * writes to protected pages are resolved by the kernel without a fault message, the page's
 * uffd-wp bit is just cleared) and UFFD_FEATURE_WP_UNPOPULATED, and a thread registers every
 * writable private mapping in write-protect mode (re-reading /proc/self/maps every
 * LMTK_TRACE_REGISTER_MS, default 20 ms, to pick up new ones).  Which parts of a mapping are
 * not registered yet the kernel says (PAGEMAP_SCAN, pages outside PAGE_IS_WPALLOWED), and only
 * those are registered and write-protected: a mapping that grew (the heap merging with its
 * newly registered brk growth) had been write-protected whole again, erasing the marks of the
 * pages written since the last scan (a heap buffer written at 2000 pages/s traced at ~100/s),
 * and a table of registered ranges kept an unmapped one, so a mapping made again at the same
 * address was never registered (traced at 0).  Writes to a mapping before the thread's next
 * pass after it appears, and to one unmapped before the tracer's scan, are not seen.  The tracer outside then calls
 * ioctl(PAGEMAP_SCAN, PM_SCAN_WP_MATCHING) on /proc/PID/pagemap: it returns the pages
 * written since the last scan and write-protects them again, atomically.
 *
 * The shim's own writes are not the program's: everything the registrar thread writes (its
 * stack, the thread descriptor and TLS glibc puts at the top of a stack it is given, the
 * /proc/self/maps read buffer, the table of registered ranges) lives in one private
 * anonymous region of its own, between two PROT_NONE guard pages so that the kernel never
 * merges it with a neighbouring mapping, and that region is never registered.  The thread
 * reads /proc/self/maps with read(2) into that buffer (stdio would malloc a FILE and its
 * buffer in the thread's malloc arena: pages of the process, written every period), and the
 * library is linked -z now (no lazy binding writing its GOT).  Before this, an idle program
 * was traced at 60 pages/s, and one writing 5000 pages/s at 5090.
 *
 * Nothing is printed unless LMTK_TRACE_DEBUG is set; on a kernel without these features the
 * shim does nothing (the tracer reports what is missing).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

#define NVEC 256
#define STACK_BYTES (256 * 1024)
#define GUARD 4096

/* <linux/fs.h> (6.7+) PAGEMAP_SCAN, spelled out for older headers */
struct scan_region {
    uint64_t start, end, categories;
};
struct scan_arg {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define SCAN_IOCTL _IOWR('f', 16, struct scan_arg)
#define PAGE_IS_WPALLOWED (1 << 0)

/* the shim's own memory (never registered): the registrar's stack follows it */
struct own {
    struct scan_region vec[NVEC];  /* the unregistered parts of a mapping */
    int nreg;                      /* ranges registered (for LMTK_TRACE_DEBUG) */
    size_t held;      /* bytes of an incomplete line kept at the start of buf */
    char buf[65536];  /* /proc/self/maps, read in pieces */
};

static int uffd = -1, pagemap = -1;
static int debug;
static struct own *own;            /* inside [own_lo, own_hi) */
static uint64_t own_lo, own_hi;    /* the region between the guard pages */

/* "start-end perms ..." → 1 and the fields, or 0 */
static int parse(const char *l, const char *end, uint64_t *s, uint64_t *e, const char **perms)
{
    uint64_t v[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        int digits = 0;
        for (; l < end; l++, digits++) {
            int c = *l, d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0)
                break;
            v[k] = v[k] << 4 | (uint64_t)d;
        }
        if (!digits || l >= end || *l != (k ? ' ' : '-'))
            return 0;
        l++;
    }
    if (end - l < 4)
        return 0;
    *s = v[0], *e = v[1], *perms = l;
    return 1;
}

static int special(const char *l, const char *end)
{
    static const char *names[] = {"[vvar]", "[vdso]", "[vsyscall]", "[vvar_vclock]"};
    for (unsigned i = 0; i < sizeof names / sizeof *names; i++) {
        size_t n = strlen(names[i]);
        if ((size_t)(end - l) >= n && memmem(l, (size_t)(end - l), names[i], n))
            return 1;
    }
    return 0;
}

/* register [s, e) and write-protect it: its pages count as written only from now on */
static void register_range(uint64_t s, uint64_t e)
{
    struct uffdio_register r = {.range = {.start = s, .len = e - s}, .mode = UFFDIO_REGISTER_MODE_WP};
    if (ioctl(uffd, UFFDIO_REGISTER, &r) == 0) {
        struct uffdio_writeprotect wp = {.range = {.start = s, .len = e - s},
                                         .mode = UFFDIO_WRITEPROTECT_MODE_WP};
        ioctl(uffd, UFFDIO_WRITEPROTECT, &wp);
        own->nreg++;
    } else if (debug) {
        fprintf(stderr, "wp_shim: register %lx-%lx failed\n", (unsigned long)s, (unsigned long)e);
    }
}

/* Register the parts of the mapping [s, e) that are not registered yet, as the kernel says
 * (PAGEMAP_SCAN without WP_MATCHING: the pages outside PAGE_IS_WPALLOWED; registered mappings
 * are skipped whole, without walking their page tables).  Only those parts are write-protected:
 * the registered part keeps the marks of the pages written since the tracer's last scan. */
static void protect_unregistered(uint64_t s, uint64_t e)
{
    while (s < e) {
        struct scan_arg a = {.size = sizeof a, .start = s, .end = e,
                             .vec = (uint64_t)(uintptr_t)own->vec, .vec_len = NVEC,
                             .category_inverted = PAGE_IS_WPALLOWED,
                             .category_mask = PAGE_IS_WPALLOWED, .return_mask = PAGE_IS_WPALLOWED};
        long n = ioctl(pagemap, SCAN_IOCTL, &a);
        if (n < 0) {
            if (debug)
                perror("wp_shim: PAGEMAP_SCAN");
            return;
        }
        for (long i = 0; i < n; i++)
            register_range(own->vec[i].start, own->vec[i].end);
        if (n < NVEC || a.walk_end >= e)
            return;
        s = a.walk_end;
    }
}

static void register_line(const char *l, const char *end)
{
    uint64_t s, e;
    const char *perms;
    if (!parse(l, end, &s, &e, &perms))
        return;
    if (perms[1] != 'w' || perms[3] != 'p')   /* writable, private */
        return;
    if ((s < own_hi && e > own_lo) || special(l, end))  /* the shim's own region */
        return;
    protect_unregistered(s, e);
}

static void register_all(void)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    own->held = 0;
    for (;;) {
        ssize_t n = read(fd, own->buf + own->held, sizeof own->buf - own->held);
        if (n <= 0)
            break;
        char *l = own->buf, *end = own->buf + own->held + n, *nl;
        while ((nl = memchr(l, '\n', (size_t)(end - l)))) {
            register_line(l, nl);
            l = nl + 1;
        }
        own->held = (size_t)(end - l);
        if (own->held == sizeof own->buf)  /* a line longer than the buffer: drop it */
            own->held = 0;
        memmove(own->buf, l, own->held);
    }
    close(fd);
}

static void *registrar(void *arg)
{
    long period = (long)(intptr_t)arg;
    struct timespec ts = {.tv_sec = period / 1000, .tv_nsec = (period % 1000) * 1000000L};
    for (;;) {
        register_all();
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* map [guard | struct own | stack | guard]; 0 on success */
static int map_own(void)
{
    size_t body = (sizeof(struct own) + 4095) / 4096 * 4096 + STACK_BYTES;
    char *m = mmap(NULL, body + 2 * GUARD, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return -1;
    if (mprotect(m + GUARD, body, PROT_READ | PROT_WRITE) != 0)
        return -1;
    own = (struct own *)(m + GUARD);
    own_lo = (uint64_t)(uintptr_t)(m + GUARD);
    own_hi = own_lo + body;
    return 0;
}

__attribute__((constructor)) static void wp_shim_init(void)
{
    debug = getenv("LMTK_TRACE_DEBUG") != NULL;
    const char *ms = getenv("LMTK_TRACE_REGISTER_MS");
    long period = ms ? atol(ms) : 20;
    if (map_own() != 0) {
        if (debug)
            perror("wp_shim: mmap");
        return;
    }
    uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (uffd < 0)
        uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0) {
        if (debug)
            perror("wp_shim: userfaultfd");
        return;
    }
    pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (pagemap < 0) {
        if (debug)
            perror("wp_shim: /proc/self/pagemap");
        close(uffd);
        uffd = -1;
        return;
    }
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED};
    if (ioctl(uffd, UFFDIO_API, &api) != 0) {
        if (debug)
            perror("wp_shim: UFFDIO_API (WP_ASYNC needs Linux >= 6.7)");
        close(uffd);
        close(pagemap);
        uffd = pagemap = -1;
        return;
    }
    register_all();
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    /* the stack (and glibc's thread descriptor at its top) in the shim's own region */
    pthread_attr_setstack(&a, (char *)(uintptr_t)own_hi - STACK_BYTES, STACK_BYTES);
    pthread_create(&t, &a, registrar, (void *)(intptr_t)period);
    pthread_attr_destroy(&a);
    if (debug)
        fprintf(stderr, "wp_shim: armed, %d mappings\n", own->nreg);
}
