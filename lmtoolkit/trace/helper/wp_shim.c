/*
 * wp_shim.so — LD_PRELOAD helper for `lmtk trace -- COMMAND`.
 *
 * A userfaultfd belongs to the process (mm) that creates it, so the write-protection that
 * makes PAGEMAP_SCAN report written pages has to be armed inside the traced process.  This
 * library's constructor creates a userfaultfd with UFFD_FEATURE_WP_ASYNC (Linux >= 6.7:
 * writes to protected pages are resolved by the kernel without a fault message, the page's
 * uffd-wp bit is just cleared) and UFFD_FEATURE_WP_UNPOPULATED, and a thread registers every
 * writable private mapping in write-protect mode (re-reading /proc/self/maps every
 * LMTK_TRACE_REGISTER_MS, default 20 ms, to pick up new ones).  The tracer outside then calls
 * ioctl(PAGEMAP_SCAN, PM_SCAN_WP_MATCHING) on /proc/PID/pagemap: it returns the pages
 * written since the last scan and write-protects them again, atomically.
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

#define MAXR 4096
static int uffd = -1;
static uint64_t reg_start[MAXR], reg_end[MAXR];
static int nreg;
static int debug;

static int registered(uint64_t s, uint64_t e)
{
    for (int i = 0; i < nreg; i++)
        if (reg_start[i] == s && reg_end[i] == e)
            return 1;
    return 0;
}

static void register_all(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        unsigned long s, e;
        char perms[8] = "";
        if (sscanf(line, "%lx-%lx %7s", &s, &e, perms) != 3)
            continue;
        if (perms[1] != 'w' || perms[3] != 'p')   /* writable, private */
            continue;
        if (strstr(line, "[vvar]") || strstr(line, "[vdso]") || strstr(line, "[vsyscall]"))
            continue;
        if (registered(s, e) || nreg >= MAXR)
            continue;
        struct uffdio_register r = {.range = {.start = s, .len = e - s}, .mode = UFFDIO_REGISTER_MODE_WP};
        if (ioctl(uffd, UFFDIO_REGISTER, &r) == 0) {
            struct uffdio_writeprotect wp = {.range = {.start = s, .len = e - s},
                                             .mode = UFFDIO_WRITEPROTECT_MODE_WP};
            ioctl(uffd, UFFDIO_WRITEPROTECT, &wp);
            reg_start[nreg] = s;
            reg_end[nreg] = e;
            nreg++;
        } else if (debug) {
            fprintf(stderr, "wp_shim: register %lx-%lx failed\n", s, e);
        }
    }
    fclose(f);
}

static void *registrar(void *arg)
{
    (void)arg;
    const char *ms = getenv("LMTK_TRACE_REGISTER_MS");
    long period = ms ? atol(ms) : 20;
    struct timespec ts = {.tv_sec = period / 1000, .tv_nsec = (period % 1000) * 1000000L};
    for (;;) {
        register_all();
        nanosleep(&ts, NULL);
    }
    return NULL;
}

__attribute__((constructor)) static void wp_shim_init(void)
{
    debug = getenv("LMTK_TRACE_DEBUG") != NULL;
    uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (uffd < 0)
        uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0) {
        if (debug)
            perror("wp_shim: userfaultfd");
        return;
    }
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED};
    if (ioctl(uffd, UFFDIO_API, &api) != 0) {
        if (debug)
            perror("wp_shim: UFFDIO_API (WP_ASYNC needs Linux >= 6.7)");
        close(uffd);
        uffd = -1;
        return;
    }
    register_all();
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_create(&t, &a, registrar, NULL);
    if (debug)
        fprintf(stderr, "wp_shim: armed, %d mappings\n", nreg);
}
