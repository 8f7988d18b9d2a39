/* Writes PAGES_PER_S distinct pages per second of a 64 MiB buffer (10 bursts per second,
 * cycling through the buffer) for SECONDS seconds: the trace test's known workload. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
int main(int argc, char **argv)
{
    long rate = argc > 1 ? atol(argv[1]) : 2000, secs = argc > 2 ? atol(argv[2]) : 2;
    long npages = 64L * 1024 * 1024 / 4096, cur = 0;
    char *b = mmap(NULL, npages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct timespec ts = {0, 100000000L};
    for (long burst = 0; burst < secs * 10; burst++) {
        for (long i = 0; i < rate / 10; i++) {
            b[cur * 4096] = (char)burst;
            cur = (cur + 1) % npages;
        }
        nanosleep(&ts, NULL);
    }
    return 0;
}
