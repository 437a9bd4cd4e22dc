/*
 * pg_sync: session parameters follow a client onto whichever server it gets (core): the SETs
 * (or set_config calls) Sluice injects when linking, and the fingerprints that skip them when
 * nothing differs.
 */
#include <string.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_wire.h"

/* Sends one statement Sluice injects (its results are consumed). */
static int inject(pg_server *s, gw_buf *sql)
{
    gw_bufpool *bufs = s->conn.gw->bufs;
    int rc = gw_buf_append(sql, bufs, "", 1);
    rc = rc ? rc : pg_build_query(&s->conn.out, bufs, (const char *)sql->data);
    rc = rc ? rc : pg_reqq_push(s, 'Q', PG_REQ_SKIP, NULL, false);
    sql->len = 0;
    return rc;
}

/* The value client c wants for k on its server: its own, else the pool's default; NULL when it
 * has none (the server should not carry a value another client set). */
static const char *wanted(const pg_server *s, const pg_client *c, const char *k)
{
    const char *want = pg_params_get(&c->params, k);
    return want ? want : pg_params_get(&s->pool->defaults, k);
}

int pg_relay_sync_params(pg_server *s, pg_client *c)
{
    pg_gateway *gw = s->conn.gw;
    /* The common case: the server last matched a client with the same settings. */
    if (s->synced && s->synced_fp == pg_params_fingerprint(&c->params))
        return 0;
    s->synced = true;
    s->synced_fp = pg_params_fingerprint(&c->params);
    s->resync = false;
    /* Every parameter the server carries or the client wants is compared, however many there
     * are: a value the previous client chose must never reach this one. Names to change are
     * collected first, because changing s->params rebuilds its blob. */
    gw_buf names = {0}, sql = {0};
    int rc = 0;
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        const pg_params *src = pass == 0 ? &s->params : &c->params;
        for (const char *k = pg_params_first(src); k && rc == 0; k = pg_params_next(src, k)) {
            if (pass == 1 && pg_params_get(&s->params, k))
                continue;
            if (!pg_param_settable(k) || !pg_param_name_ok(k))
                continue;
            const char *want = wanted(s, c, k);
            const char *have = pg_params_get(&s->params, k);
            if (want && have && strcmp(want, have) == 0)
                continue;
            if (!want && !have)
                continue;
            if (want) {
                /* set_config takes the value as the startup packet gives it: SET would quote
                 * a list such as search_path=a,b into one element. */
                rc = gw_buf_append(&sql, gw->bufs, "SELECT pg_catalog.set_config(", 29);
                rc = rc ? rc : pg_quote_literal(&sql, gw->bufs, k);
                rc = rc ? rc : gw_buf_append(&sql, gw->bufs, ", ", 2);
                rc = rc ? rc : pg_quote_literal(&sql, gw->bufs, want);
                rc = rc ? rc : gw_buf_append(&sql, gw->bufs, ", false)", 8);
            } else {
                /* Set by an earlier client, not reported by the server, unknown to this one. */
                rc = gw_buf_append(&sql, gw->bufs, "RESET ", 6);
                rc = rc ? rc : gw_buf_append(&sql, gw->bufs, k, strlen(k));
            }
            rc = rc ? rc : inject(s, &sql);
            rc = rc ? rc : gw_buf_append(&names, gw->bufs, k, strlen(k) + 1);
        }
    }
    /* Recorded now: the server reports only GUC_REPORT parameters back. */
    for (size_t off = 0; rc == 0 && off < names.len;) {
        const char *k = (const char *)names.data + off;
        const char *want = wanted(s, c, k);
        if (want)
            rc = pg_params_set(&s->params, k, want);
        else
            pg_params_del(&s->params, k);
        off += strlen(k) + 1;
    }
    if (names.len)
        pg_conn_mark(&s->conn);
    gw_buf_release(&sql, gw->bufs);
    gw_buf_release(&names, gw->bufs);
    return rc;
}
