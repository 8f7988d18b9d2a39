/*
 * dirtier — /init of the lmtoolkit testbed guest (static, no libc beyond the static one).
 *
 * At boot it fills a buffer with pseudo-random data (so every buffer page is a non-zero,
 * "normal" page for the migration), prints "LMTK READY", then writes pages at a set rate
 * (pages/s) over a hot set of the buffer, sequentially or at random, and answers commands
 * on the console (the serial port), one per line:
 *
 *   set rate=R hot=H pattern=seq|rand wbytes=W catchup_ms=C
 *                                                change the workload (any subset of keys)
 *   stats                                        -> LMTK STATS writes=N t=SECONDS rate=R hot=H
 *                                                   cursor=C (the sequential writer's next page)
 *   verify                                       -> LMTK VERIFY pages=N bad=M first_bad=P
 *   ping                                         -> LMTK PONG
 *
 * Pacing: the writer keeps a schedule of `rate` writes per second of the guest's clock and,
 * after a stall (its vCPU descheduled or throttled by auto-converge), catches up on at most
 * `catchup_ms` of missed writes (default 20).  catchup_ms=1 is a writer paced by the CPU
 * it gets (a throttled vCPU loses its writes: guest pacing); a large catchup_ms (10000) is a
 * writer paced by the clock, which makes up for every stall while it has CPU to spare.
 *
 * Every write bumps the page's version and rewrites its first `wbytes` bytes with data
 * derived from (seed, page, version); `verify` recomputes every page from the versions and
 * counts pages whose content differs — a dirty page lost by the migration shows up there.
 *
 * Boot parameters (kernel command line, passed to init as environment variables):
 *   lmtkbuf=MiB (buffer size, default 128)  lmtkseed=N (default 1)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define WORDS (PAGE / 8)

static uint64_t *buf;
static uint32_t *ver;
static uint64_t npages, hot, seed = 1;
static double rate;
static double catchup = 0.02; /* seconds of missed writes made up after a stall */
static int sequential;
static unsigned wbytes = 64;
static uint64_t writes;        /* page writes done since boot */
static uint64_t cursor, rng = 0x9e3779b97f4a7c15ULL;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline uint64_t splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Word i of page p's content at version v (v = 0: the initial fill). */
static inline uint64_t word(uint64_t p, uint32_t v, unsigned i)
{
    return splitmix(seed * 0x100000001b3ULL ^ (p << 20) ^ ((uint64_t)v << 44) ^ i) | 1;
}

static void fill_page(uint64_t p, uint32_t v, unsigned nwords)
{
    uint64_t *w = buf + p * WORDS;
    for (unsigned i = 0; i < nwords; i++)
        w[i] = word(p, v, i);
}

static inline uint64_t xorshift(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void write_one(void)
{
    uint64_t p;
    if (sequential) {
        p = cursor;
        cursor = (cursor + 1) % hot;
    } else {
        p = xorshift() % hot;
    }
    ver[p]++;
    fill_page(p, ver[p], wbytes / 8);
    writes++;
}

static void verify(void)
{
    uint64_t bad = 0, first = (uint64_t)-1;
    unsigned nw = wbytes / 8;
    for (uint64_t p = 0; p < npages; p++) {
        uint64_t *w = buf + p * WORDS;
        int ok = 1;
        for (unsigned i = 0; i < WORDS && ok; i++) {
            uint64_t want = (ver[p] && i < nw) ? word(p, ver[p], i) : word(p, 0, i);
            ok = w[i] == want;
        }
        if (!ok) {
            if (!bad)
                first = p;
            bad++;
        }
    }
    printf("LMTK VERIFY pages=%llu bad=%llu first_bad=%lld\n", (unsigned long long)npages,
           (unsigned long long)bad, (long long)first);
    /* After a write with a smaller wbytes the bytes beyond it keep an older version: verify
     * against a single wbytes per boot (the driver never changes wbytes mid-boot). */
}

static void set_params(char *s)
{
    for (char *tok = strtok(s, " \t"); tok; tok = strtok(NULL, " \t")) {
        char *eq = strchr(tok, '=');
        if (!eq)
            continue;
        *eq++ = 0;
        if (!strcmp(tok, "rate"))
            rate = atof(eq);
        else if (!strcmp(tok, "hot")) {
            uint64_t h = strtoull(eq, NULL, 10);
            hot = (h == 0 || h > npages) ? npages : h;
            cursor %= hot;
        } else if (!strcmp(tok, "pattern"))
            sequential = !strcmp(eq, "seq") || !strcmp(eq, "sequential");
        else if (!strcmp(tok, "wbytes")) {
            unsigned w = (unsigned)atoi(eq);
            wbytes = w < 8 ? 8 : (w > PAGE ? PAGE : w & ~7u);
        } else if (!strcmp(tok, "seed"))
            rng = splitmix(strtoull(eq, NULL, 10)) | 1;
    }
}

static void setup_console(void)
{
    mkdir("/proc", 0755);
    mkdir("/dev", 0755);
    mount("proc", "/proc", "proc", 0, NULL);
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    int fd = open("/dev/ttyS0", O_RDWR | O_NOCTTY);
    if (fd < 0)
        fd = open("/dev/console", O_RDWR | O_NOCTTY);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (fd > 2)
            close(fd);
    }
    struct termios t;
    if (tcgetattr(0, &t) == 0) {
        t.c_lflag &= ~(ECHO | ECHONL | ECHOE | ECHOK);
        t.c_lflag |= ICANON;
        t.c_iflag &= ~(ICRNL | IXON);
        t.c_oflag |= OPOST | ONLCR;
        tcsetattr(0, TCSANOW, &t);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
}

int main(void)
{
    if (getpid() == 1)
        setup_console();
    const char *e = getenv("lmtkbuf");
    uint64_t mib = e ? strtoull(e, NULL, 10) : 128;
    if ((e = getenv("lmtkseed")))
        seed = strtoull(e, NULL, 10);
    npages = mib * 1024 * 1024 / PAGE;
    hot = npages;
    buf = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
               -1, 0);
    ver = calloc(npages, sizeof *ver);
    if (buf == MAP_FAILED || !ver) {
        printf("LMTK ERROR out of memory for %llu MiB\n", (unsigned long long)mib);
        for (;;)
            pause();
    }
    double t0 = now();
    for (uint64_t p = 0; p < npages; p++)
        fill_page(p, 0, WORDS);
    printf("LMTK READY pages=%llu fill_s=%.3f\n", (unsigned long long)npages, now() - t0);

    char line[512];
    size_t len = 0;
    double base_t = now();
    uint64_t base_w = writes;
    for (;;) {
        struct pollfd pfd = {.fd = 0, .events = POLLIN};
        int r = poll(&pfd, 1, rate > 0 ? 1 : 50);
        if (r > 0 && (pfd.revents & POLLIN)) {
            ssize_t n = read(0, line + len, sizeof line - 1 - len);
            if (n > 0)
                len += (size_t)n;
            char *nl;
            while ((nl = memchr(line, '\n', len)) || (nl = memchr(line, '\r', len))) {
                *nl = 0;
                char *cmd = line;
                while (*cmd == '\r' || *cmd == ' ')
                    cmd++;
                if (!strncmp(cmd, "set", 3)) {
                    set_params(cmd + 3);
                    base_t = now();
                    base_w = writes;
                    printf("LMTK OK rate=%.0f hot=%llu pattern=%s wbytes=%u catchup_ms=%.0f\n", rate,
                           (unsigned long long)hot, sequential ? "seq" : "rand", wbytes, catchup * 1000.0);
                } else if (!strcmp(cmd, "stats")) {
                    printf("LMTK STATS writes=%llu t=%.6f rate=%.0f hot=%llu cursor=%llu\n",
                           (unsigned long long)writes, now(), rate, (unsigned long long)hot,
                           (unsigned long long)cursor);
                } else if (!strcmp(cmd, "verify")) {
                    verify();
                    base_t = now();
                    base_w = writes;
                } else if (!strcmp(cmd, "ping")) {
                    printf("LMTK PONG\n");
                } else if (*cmd) {
                    printf("LMTK ERROR unknown command '%s'\n", cmd);
                }
                size_t used = (size_t)(nl - line) + 1;
                memmove(line, line + used, len - used);
                len -= used;
            }
            if (len >= sizeof line - 1)
                len = 0;
        }
        if (rate > 0) {
            double t = now();
            uint64_t target = base_w + (uint64_t)((t - base_t) * rate);
            /* Never build a backlog of more than `catchup` seconds of writes. */
            if (target > writes + (uint64_t)(rate * catchup) + 1) {
                base_w = writes;
                base_t = t - catchup;
                target = writes + (uint64_t)(rate * catchup);
            }
            /* at most ~10 ms of writing per turn, so commands are answered during a catch-up */
            for (unsigned n = 0; writes < target; n++) {
                write_one();
                if ((n & 255) == 255 && now() - t > 0.01)
                    break;
            }
        }
    }
}
