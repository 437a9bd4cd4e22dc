/* admin_int.h: what admin.c and admin_show.c share. */
#ifndef SLUICE_GW_ADMIN_INT_H
#define SLUICE_GW_ADMIN_INT_H

#include "gateway/admin.h"
#include "gateway/stats.h"

/* The counters SHOW STATS reports, in its column order (PgBouncer's). */
enum {
    GW_AS_ASSIGN,
    GW_AS_XACT,
    GW_AS_QUERY,
    GW_AS_RECV,
    GW_AS_SENT,
    GW_AS_XACT_TIME,
    GW_AS_QUERY_TIME,
    GW_AS_WAIT_TIME,
    GW_AS_CLIENT_PARSE,
    GW_AS_SERVER_PARSE,
    GW_AS_BIND,
    GW_AS_LOGIN,
    GW_AS__COUNT
};

/* One database's totals at the last stats_period boundary, and the averages over the period
 * that ended there (per second for counts and bytes, µs per event for times). */
struct gw_admin_snap {
    char *db;
    const char *protocol; /* a source's static string */
    uint64_t tot[GW_AS__COUNT];
    uint64_t avg[GW_AS__COUNT];
};

void gw_admin__snaps_free(gw_admin *a);
/* SHOW what (nwords: words in the command, 2 expected). */
int gw_admin__show(struct gw_ctx *ctx, const char *what, unsigned nwords, gw_admin_out *out);
/* Only the columns of SHOW what: 1 when it has rows, 0 when what is unknown, -1 on failure. */
int gw_admin__show_columns(struct gw_ctx *ctx, const char *what, gw_admin_out *out);

#endif
