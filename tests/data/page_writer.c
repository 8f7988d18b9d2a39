/* The trace test's known workload: writes PAGES_PER_S distinct pages per second of a 64 MiB
 * buffer (cycling through it in address order) for SECONDS seconds.
 *
 *   page_writer PAGES_PER_S SECONDS [GROW_MS]
 *
 * With GROW_MS the buffer is taken from the heap (sbrk) and the heap grows by one page, left
 * untouched, every GROW_MS ms: the mapping that holds the buffer grows while it is written.
 *
 * The writes are spread evenly and paced by the absolute CLOCK_MONOTONIC: at every 1 ms tick
 * k the writer catches up to PAGES_PER_S * k / 1000 pages written.  So the number of pages
 * written in any window is PAGES_PER_S x its length (+- one tick's worth), whatever the phase
 * of the tracer's sampling clock, and the pace does not drift (a relative sleep after each
 * burst made every period 1-2 ms longer than asked, and bursts slid across the tracer's
 * interval boundaries). */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include <time.h>

int main(int argc, char **argv)
{
    long rate = argc > 1 ? atol(argv[1]) : 2000, secs = argc > 2 ? atol(argv[2]) : 2;
    long grow_ms = argc > 3 ? atol(argv[3]) : 0;
    long npages = 64L * 1024 * 1024 / 4096, cur = 0, done = 0;
    char *b = grow_ms > 0 ? sbrk(npages * 4096)
                          : mmap(NULL, npages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED || b == (char *)-1)
        return 1;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    for (long tick = 1; tick <= secs * 1000; tick++) {
        t.tv_nsec += 1000000L;
        if (t.tv_nsec >= 1000000000L) {
            t.tv_nsec -= 1000000000L;
            t.tv_sec++;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
        for (long due = rate * tick / 1000; done < due; done++) {
            b[cur * 4096] = (char)tick;
            cur = (cur + 1) % npages;
        }
        if (grow_ms > 0 && tick % grow_ms == 0 && sbrk(4096) == (void *)-1)
            return 1;
    }
    return 0;
}
