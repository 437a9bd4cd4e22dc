/*
 * The process_* metrics, named as the Prometheus client libraries name them, read from
 * getrusage, getrlimit and Linux's /proc/self (files the kernel answers from memory, so reading
 * them does not block the loop).
 */
#include <dirent.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#include "gateway/metrics.h"
#include "gateway/prom.h"

static double seconds(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

/* Virtual and resident size in bytes from /proc/self/statm (pages). */
static int memory(double *vsize, double *rss)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    unsigned long size, resident;
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    if (n != 2)
        return -1;
    double page = (double)sysconf(_SC_PAGESIZE);
    *vsize = (double)size * page;
    *rss = (double)resident * page;
    return 0;
}

void gw_metrics__process(FILE *f, double start_time)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        gw_prom_family(f, "process_cpu_seconds_total", "counter",
                       "Total user and system CPU time spent in seconds.");
        gw_prom_double(f, "process_cpu_seconds_total", NULL, 0,
                       seconds(ru.ru_utime) + seconds(ru.ru_stime));
    }
    double vsize, rss;
    if (memory(&vsize, &rss) == 0) {
        gw_prom_family(f, "process_resident_memory_bytes", "gauge",
                       "Resident memory size in bytes.");
        gw_prom_double(f, "process_resident_memory_bytes", NULL, 0, rss);
        gw_prom_family(f, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
        gw_prom_double(f, "process_virtual_memory_bytes", NULL, 0, vsize);
    }
    long fds = open_fds();
    if (fds >= 0) {
        gw_prom_family(f, "process_open_fds", "gauge", "Number of open file descriptors.");
        gw_prom_u64(f, "process_open_fds", NULL, 0, (uint64_t)fds);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        gw_prom_family(f, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        gw_prom_u64(f, "process_max_fds", NULL, 0, (uint64_t)rl.rlim_cur);
    }
    gw_prom_family(f, "process_start_time_seconds", "gauge",
                   "Start time of the process since unix epoch in seconds.");
    gw_prom_double(f, "process_start_time_seconds", NULL, 0, start_time);
}
