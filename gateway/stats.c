/* stats: histograms, tallies, the source registry and the process figures (gateway/stats.h). */
#include "gateway/stats.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gateway/ctx.h"

uint64_t gw_hist_bound_us(unsigned i)
{
    if (i >= GW_HIST_BUCKETS - 1)
        return UINT64_MAX;
    return (uint64_t)1 << i;
}

void gw_hist__add(gw_hist *h, uint64_t us)
{
    /* Bucket of v: the smallest i with v <= 2^i, i.e. the bit length of v - 1 (0 and 1 go to
     * bucket 0). */
    unsigned i = us <= 1 ? 0 : 64u - (unsigned)__builtin_clzll(us - 1);
    if (i > GW_HIST_BUCKETS - 1)
        i = GW_HIST_BUCKETS - 1;
    h->bucket[i]++;
    h->count++;
    h->sum_us += us;
}

void gw_hist_merge(gw_hist *into, const gw_hist *h)
{
    for (unsigned i = 0; i < GW_HIST_BUCKETS; i++)
        into->bucket[i] += h->bucket[i];
    into->count += h->count;
    into->sum_us += h->sum_us;
}

void gw_hist_cumulative(const gw_hist *h, uint64_t out[GW_HIST_BUCKETS])
{
    uint64_t run = 0;
    for (unsigned i = 0; i < GW_HIST_BUCKETS; i++) {
        run += h->bucket[i];
        out[i] = run;
    }
}

void gw_codes__add(gw_codes *t, const char *code, size_t len)
{
    if (len == 0 || len > GW_CODE_MAXLEN) {
        t->other++;
        return;
    }
    for (unsigned i = 0; i < GW_CODES_MAX; i++) {
        char *slot = t->code[i];
        if (slot[0] == '\0') {
            memcpy(slot, code, len);
            slot[len] = '\0';
            t->count[i] = 1;
            return;
        }
        if (strncmp(slot, code, len) == 0 && slot[len] == '\0') {
            t->count[i]++;
            return;
        }
    }
    t->other++;
}

/* Adds n occurrences of code; the same overflow rule as one by one. */
static void codes_add_n(gw_codes *t, const char *code, uint64_t n)
{
    for (unsigned i = 0; i < GW_CODES_MAX; i++) {
        if (t->code[i][0] == '\0') {
            snprintf(t->code[i], sizeof t->code[i], "%s", code);
            t->count[i] = n;
            return;
        }
        if (strcmp(t->code[i], code) == 0) {
            t->count[i] += n;
            return;
        }
    }
    t->other += n;
}

void gw_codes_merge(gw_codes *into, const gw_codes *t)
{
    for (unsigned i = 0; i < GW_CODES_MAX && t->code[i][0]; i++)
        codes_add_n(into, t->code[i], t->count[i]);
    into->other += t->other;
}

static const char *const mongo_cmd_names[GW_MCMD__COUNT] = {
    [GW_MCMD_FIND] = "find",
    [GW_MCMD_GETMORE] = "getMore",
    [GW_MCMD_INSERT] = "insert",
    [GW_MCMD_UPDATE] = "update",
    [GW_MCMD_DELETE] = "delete",
    [GW_MCMD_AGGREGATE] = "aggregate",
    [GW_MCMD_FINDANDMODIFY] = "findAndModify",
    [GW_MCMD_COUNT] = "count",
    [GW_MCMD_DISTINCT] = "distinct",
    [GW_MCMD_KILLCURSORS] = "killCursors",
    [GW_MCMD_COMMITTRANSACTION] = "commitTransaction",
    [GW_MCMD_ABORTTRANSACTION] = "abortTransaction",
    [GW_MCMD_HELLO] = "hello",
    [GW_MCMD_PING] = "ping",
    [GW_MCMD_ENDSESSIONS] = "endSessions",
    [GW_MCMD_CREATE] = "create",
    [GW_MCMD_DROP] = "drop",
    [GW_MCMD_CREATEINDEXES] = "createIndexes",
    [GW_MCMD_LISTCOLLECTIONS] = "listCollections",
    [GW_MCMD_LISTINDEXES] = "listIndexes",
    [GW_MCMD_AUTH] = "auth",
    [GW_MCMD_OTHER] = "other",
};

/* Names that map to a command whose label differs (command names are case-sensitive in MongoDB,
 * except that drivers send both isMaster and ismaster). */
static const struct {
    const char *name;
    gw_mongo_cmd cmd;
} mongo_cmd_aliases[] = {
    {"isMaster", GW_MCMD_HELLO},    {"ismaster", GW_MCMD_HELLO},    {"saslStart", GW_MCMD_AUTH},
    {"saslContinue", GW_MCMD_AUTH}, {"authenticate", GW_MCMD_AUTH},
};

static bool name_is(const char *name, size_t len, const char *s)
{
    return strlen(s) == len && memcmp(name, s, len) == 0;
}

gw_mongo_cmd gw_mongo_cmd_of(const char *name, size_t len)
{
    for (unsigned i = 0; i < GW_MCMD_OTHER; i++)
        if (name_is(name, len, mongo_cmd_names[i]))
            return (gw_mongo_cmd)i;
    for (size_t i = 0; i < sizeof mongo_cmd_aliases / sizeof mongo_cmd_aliases[0]; i++)
        if (name_is(name, len, mongo_cmd_aliases[i].name))
            return mongo_cmd_aliases[i].cmd;
    return GW_MCMD_OTHER;
}

const char *gw_mongo_cmd_name(gw_mongo_cmd c)
{
    if ((unsigned)c >= GW_MCMD__COUNT)
        return "other";
    return mongo_cmd_names[c];
}

void gw_pool_stats_add(gw_pool_stats *into, const gw_pool_stats *s)
{
    into->server_assignments += s->server_assignments;
    into->xacts += s->xacts;
    into->queries += s->queries;
    into->bytes_recv += s->bytes_recv;
    into->bytes_sent += s->bytes_sent;
    into->xact_time_us += s->xact_time_us;
    into->query_time_us += s->query_time_us;
    into->wait_time_us += s->wait_time_us;
    into->client_parses += s->client_parses;
    into->server_parses += s->server_parses;
    into->binds += s->binds;
    into->client_logins += s->client_logins;
    into->server_connects += s->server_connects;
    into->server_connect_failures += s->server_connect_failures;
    gw_codes_merge(&into->errors, &s->errors);
    for (unsigned i = 0; i < GW_MCMD__COUNT; i++)
        into->mongo_cmds[i] += s->mongo_cmds[i];
    into->cursors_pinned += s->cursors_pinned;
    into->txns_pinned += s->txns_pinned;
    into->killed_cursors += s->killed_cursors;
    into->aborted_txns += s->aborted_txns;
    gw_hist_merge(&into->wait_hist, &s->wait_hist);
    gw_hist_merge(&into->xact_hist, &s->xact_hist);
    gw_hist_merge(&into->query_hist, &s->query_hist);
}

static uint64_t clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t gw_stats_now_us(void)
{
    return clock_us(CLOCK_MONOTONIC);
}

uint64_t gw_stats_wall_us(void)
{
    return clock_us(CLOCK_REALTIME);
}

uint64_t gw_stats_wall_of(uint64_t mono_us, uint64_t now_mono, uint64_t now_wall)
{
    if (mono_us == 0)
        return 0;
    if (mono_us > now_mono)
        return now_wall;
    return now_wall - (now_mono - mono_us);
}

void gw_stats_addr(const struct sockaddr_storage *ss, char *out, int *port)
{
    out[0] = 0;
    *port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, out, GW_ADDR_LEN);
        *port = ntohs(in->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in->sin6_addr, out, GW_ADDR_LEN);
        *port = ntohs(in->sin6_port);
    } else if (ss->ss_family == AF_UNIX) {
        snprintf(out, GW_ADDR_LEN, "unix");
    }
}

int gw_stats_register(gw_ctx *ctx, const gw_stats_source *src, void *drv)
{
    gw_stats *st = &ctx->stats;
    if (st->n == GW_STATS_SOURCES_MAX)
        return -ENOSPC;
    st->src[st->n] = src;
    st->drv[st->n] = drv;
    st->n++;
    return 0;
}

void gw_stats_unregister(gw_ctx *ctx, const gw_stats_source *src, void *drv)
{
    gw_stats *st = &ctx->stats;
    for (unsigned i = 0; i < st->n; i++) {
        if (st->src[i] == src && st->drv[i] == drv) {
            st->n--;
            st->src[i] = st->src[st->n];
            st->drv[i] = st->drv[st->n];
            return;
        }
    }
}

/* Calls each registered source's callback `cb` (skipping sources without one). */
#define EACH_SOURCE(ctx, cb, fn, arg)                                                              \
    do {                                                                                           \
        const gw_stats *st_ = &(ctx)->stats;                                                       \
        for (unsigned i_ = 0; i_ < st_->n; i_++)                                                   \
            if (st_->src[i_]->cb)                                                                  \
                st_->src[i_]->cb(st_->drv[i_], (fn), (arg));                                       \
    } while (0)

void gw_stats_each_pool(gw_ctx *ctx, gw_pool_fn *fn, void *arg)
{
    EACH_SOURCE(ctx, each_pool, fn, arg);
}

void gw_stats_each_client(gw_ctx *ctx, gw_conn_fn *fn, void *arg)
{
    EACH_SOURCE(ctx, each_client, fn, arg);
}

void gw_stats_each_server(gw_ctx *ctx, gw_conn_fn *fn, void *arg)
{
    EACH_SOURCE(ctx, each_server, fn, arg);
}

void gw_stats_each_db(gw_ctx *ctx, gw_db_fn *fn, void *arg)
{
    EACH_SOURCE(ctx, each_db, fn, arg);
}

/* Reads a small /proc file whole into buf (NUL-terminated). */
static int read_small(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return 0;
}

static uint32_t count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    uint32_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n > 0 ? n - 1 : 0; /* the directory's own descriptor */
}

int gw_process_read(gw_process_view *out)
{
    memset(out, 0, sizeof *out);
    char buf[1024];
    int rc = read_small("/proc/self/stat", buf, sizeof buf);
    if (rc != 0)
        return rc;
    /* The command name may hold spaces and parentheses: fields resume after the last ')'. */
    const char *p = strrchr(buf, ')');
    unsigned long long utime, stime, starttime, vsize;
    long long rss;
    if (!p || sscanf(p + 2,
                     "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d "
                     "%*d %llu %llu %lld",
                     &utime, &stime, &starttime, &vsize, &rss) != 5)
        return -EINVAL;
    long tick = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    if (tick <= 0 || page <= 0)
        return -EINVAL;
    out->cpu_user_us = utime * 1000000ull / (unsigned long)tick;
    out->cpu_sys_us = stime * 1000000ull / (unsigned long)tick;
    out->vsize_bytes = vsize;
    out->rss_bytes = rss > 0 ? (uint64_t)rss * (uint64_t)page : 0;
    /* starttime is in ticks since boot: the wall time of boot is now minus the uptime. */
    struct timespec up;
    if (clock_gettime(CLOCK_BOOTTIME, &up) == 0) {
        uint64_t up_us = (uint64_t)up.tv_sec * 1000000u + (uint64_t)up.tv_nsec / 1000u;
        uint64_t start_us = starttime * 1000000ull / (unsigned long)tick;
        out->start_at = gw_stats_wall_us() - up_us + start_us;
    }
    out->open_fds = count_fds();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        out->max_fds = rl.rlim_cur;
    return 0;
}
