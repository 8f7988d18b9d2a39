/* The trace test's mapping that comes back: writes all 16 pages of a small mapping every 1 ms
 * for SECONDS seconds, and every 50 ms unmaps it and maps it again at the same address.
 *
 *   remapper SECONDS */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

int main(int argc, char **argv)
{
    long secs = argc > 1 ? atol(argv[1]) : 2, n = 16 * 4096;
    char *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return 1;
    struct timespec t = {0, 1000000L};
    for (long tick = 1; tick <= secs * 1000; tick++) {
        nanosleep(&t, NULL);
        if (tick % 50 == 0) {
            munmap(m, n);
            if (mmap(m, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != m)
                return 1;
        }
        for (long i = 0; i < 16; i++)
            m[i * 4096] = (char)tick;
    }
    return 0;
}
