/*
 * pg_admin: the admin console's protocol side (core). A client that logs in to the virtual
 * database `sluice` (or `pgbouncer`) gets a session with no pool: its Query, and its
 * Parse/Bind/Describe/Execute/Sync of a console command, run through gateway/admin.h, whose
 * results become RowDescription, DataRow and CommandComplete messages here.
 *
 * A command that waits (PAUSE until transactions end, WAIT_CLOSE) leaves the session busy: its
 * further input waits until the janitor finds the command done (pg_admin_tick).
 */
#include <stdlib.h>
#include <string.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_wire.h"
#include "gateway/admin.h"

/* Console commands are short: a longer message is refused rather than held. */
#define PG_ADMIN_MSG_MAX 8192u

typedef struct pg_admin {
    char *user;
    bool full;       /* admin_users: everything; else stats_users: SHOW only */
    char *stmt;      /* the text of the last Parse (extended protocol), owned */
    bool skip;       /* an error in an extended-protocol batch: ignore messages until Sync */
    bool busy;       /* a command waits (wait below) */
    bool busy_query; /* it came in a simple Query: ReadyForQuery follows its end */
    gw_admin_wait wait;
} pg_admin;

bool pg_admin_dbname(const char *dbname)
{
    return strcmp(dbname, "sluice") == 0 || strcmp(dbname, "pgbouncer") == 0;
}

int pg_admin_params(gw_buf *out, gw_bufpool *bufs)
{
    static const char *const params[][2] = {
        {"server_version", "16.0 (Sluice " SLUICE_VERSION ")"},
        {"server_encoding", "UTF8"},
        {"client_encoding", "UTF8"},
        {"DateStyle", "ISO"},
        {"TimeZone", "UTC"},
        {"integer_datetimes", "on"},
        {"standard_conforming_strings", "on"},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof params / sizeof params[0] && rc == 0; i++)
        rc = pg_build_param_status(out, bufs, params[i][0], params[i][1]);
    return rc;
}

void pg_admin_login(pg_client *c, const char *user)
{
    const cfg *cf = pg_ctx(&c->conn)->cfg;
    bool full = cfg_names_has(&cf->admin_users, user);
    if (!full && !cfg_names_has(&cf->stats_users, user)) {
        pg_client_fatal(c, PG_END_LOGIN_REFUSED, "28000",
                        "not allowed to connect to the admin console");
        return;
    }
    pg_admin *a = calloc(1, sizeof *a);
    if (!a || !(a->user = strdup(user))) {
        free(a);
        pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
        return;
    }
    a->full = full;
    c->admin = a;
    gw_info(pg_ctx(&c->conn), "admin console login by %s (%s)", user, full ? "admin" : "stats");
    pg_client_finish_login(c);
}

const char *pg_admin_user(const pg_client *c)
{
    return c->admin ? c->admin->user : "(nouser)";
}

bool pg_admin_busy(const pg_client *c)
{
    return c->admin && c->admin->busy;
}

void pg_admin_client_gone(pg_client *c)
{
    pg_admin *a = c->admin;
    if (a && a->busy) {
        gw_list_remove(&c->wait_node);
        a->busy = false;
    }
}

void pg_admin_client_free(pg_client *c)
{
    pg_admin *a = c->admin;
    if (!a)
        return;
    free(a->stmt);
    free(a->user);
    free(a);
    c->admin = NULL;
}

/* ---- The result sink: gateway/admin.h's gw_admin_out writing protocol messages ---- */

typedef struct sink {
    pg_client *c;
    bool columns; /* RowDescription is sent (simple Query, Describe), not for Execute */
    bool failed;  /* an ErrorResponse went out */
} sink;

static int put16(gw_buf *b, gw_bufpool *p, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    return pg_msg_put(b, p, x, 2);
}

static int put32(gw_buf *b, gw_bufpool *p, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    return pg_msg_put(b, p, x, 4);
}

static int sink_columns(void *arg, unsigned n, const char *const *names, const gw_admin_type *types)
{
    sink *s = arg;
    if (!s->columns)
        return 0;
    /* Type OIDs and sizes: text, int4, int8, numeric; timestamps are sent as text. */
    static const uint32_t oid[] = {25, 23, 20, 1700, 25};
    static const int16_t len[] = {-1, 4, 8, -1, -1};
    gw_buf *b = &s->c->conn.out;
    gw_bufpool *p = s->c->conn.gw->bufs;
    size_t m;
    int rc = pg_msg_begin(b, p, 'T', &m);
    rc = rc ? rc : put16(b, p, (uint16_t)n);
    for (unsigned i = 0; i < n && rc == 0; i++) {
        rc = pg_msg_put_str(b, p, names[i]);
        rc = rc ? rc : put32(b, p, 0);
        rc = rc ? rc : put16(b, p, 0);
        rc = rc ? rc : put32(b, p, oid[types[i]]);
        rc = rc ? rc : put16(b, p, (uint16_t)len[types[i]]);
        rc = rc ? rc : put32(b, p, UINT32_MAX); /* typmod -1 */
        rc = rc ? rc : put16(b, p, 0);          /* text */
    }
    return pg_msg_finish(b, m, rc);
}

static int sink_row(void *arg, unsigned n, const char *const *values)
{
    sink *s = arg;
    gw_buf *b = &s->c->conn.out;
    gw_bufpool *p = s->c->conn.gw->bufs;
    size_t m;
    int rc = pg_msg_begin(b, p, 'D', &m);
    rc = rc ? rc : put16(b, p, (uint16_t)n);
    for (unsigned i = 0; i < n && rc == 0; i++) {
        if (!values[i]) {
            rc = put32(b, p, UINT32_MAX);
            continue;
        }
        size_t l = strlen(values[i]);
        rc = put32(b, p, (uint32_t)l);
        rc = rc ? rc : pg_msg_put(b, p, values[i], l);
    }
    return pg_msg_finish(b, m, rc);
}

static int sink_done(void *arg, const char *tag)
{
    sink *s = arg;
    size_t m;
    gw_buf *b = &s->c->conn.out;
    gw_bufpool *p = s->c->conn.gw->bufs;
    int rc = pg_msg_begin(b, p, 'C', &m);
    rc = rc ? rc : pg_msg_put_str(b, p, tag);
    rc = pg_msg_finish(b, m, rc);
    pg_conn_mark(&s->c->conn);
    return rc;
}

static int sink_error(void *arg, const char *sqlstate, const char *msg)
{
    sink *s = arg;
    s->failed = true;
    pg_conn_mark(&s->c->conn);
    return pg_build_error(&s->c->conn.out, s->c->conn.gw->bufs, "ERROR", sqlstate, msg);
}

static int sink_notice(void *arg, const char *msg, const char *detail)
{
    sink *s = arg;
    gw_buf *b = &s->c->conn.out;
    gw_bufpool *p = s->c->conn.gw->bufs;
    size_t m;
    int rc = pg_msg_begin(b, p, 'N', &m);
    const struct {
        char f;
        const char *v;
    } fields[] = {{'S', "NOTICE"}, {'V', "NOTICE"}, {'C', "00000"}, {'M', msg}, {'D', detail}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0] && rc == 0; i++) {
        rc = pg_msg_put(b, p, &fields[i].f, 1);
        rc = rc ? rc : pg_msg_put_str(b, p, fields[i].v);
    }
    rc = rc ? rc : pg_msg_put(b, p, "", 1);
    return pg_msg_finish(b, m, rc);
}

static gw_admin_out make_out(sink *s)
{
    return (gw_admin_out){.arg = s,
                          .columns = sink_columns,
                          .row = sink_row,
                          .done = sink_done,
                          .error = sink_error,
                          .notice = sink_notice};
}

/* ---- Messages ---- */

static int oom(pg_client *c)
{
    pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
    return -1;
}

static int ready(pg_client *c)
{
    pg_conn_mark(&c->conn);
    return pg_build_ready(&c->conn.out, c->conn.gw->bufs, 'I') == 0 ? 0 : oom(c);
}

/* Runs sql; a command that waits makes the session busy. */
static int run(pg_client *c, const char *sql, size_t len, bool columns, bool query)
{
    pg_admin *a = c->admin;
    sink s = {.c = c, .columns = columns};
    gw_admin_out out = make_out(&s);
    if (gw_admin_run(pg_ctx(&c->conn), sql, len, a->full, &out, &a->wait) != 0)
        return oom(c);
    if (c->conn.end != PG_END_NONE)
        return -1; /* SHUTDOWN closed every client */
    if (s.failed && !query)
        a->skip = true;
    if (a->wait.kind != GW_ADMIN_WAIT_NONE) {
        a->busy = true;
        a->busy_query = query;
        gw_list_push_tail(&c->conn.gw->admin_waiting, &c->wait_node);
        pg_admin_tick(c->conn.gw); /* it may be over already */
        return c->conn.end != PG_END_NONE ? -1 : 0;
    }
    return query ? ready(c) : 0;
}

static int protocol_error(pg_client *c, const char *what)
{
    pg_client_fatal(c, PG_END_PROTOCOL, "08P01", "%s", what);
    return -1;
}

int pg_admin_msg(pg_client *c, uint8_t t, const uint8_t *msg, size_t total)
{
    pg_admin *a = c->admin;
    gw_bufpool *bufs = c->conn.gw->bufs;
    gw_buf *out = &c->conn.out;
    const uint8_t *body = msg + 5;
    size_t len = total - 5;
    if (total > PG_ADMIN_MSG_MAX) {
        pg_client_fatal(c, PG_END_TOO_BIG, "54000", "admin console message too long");
        return -1;
    }
    if (a->skip && t != 'S')
        return 0;
    pg_conn_mark(&c->conn);
    switch (t) {
    case 'Q': {
        size_t n = len ? strnlen((const char *)body, len) : 0;
        if (n == len)
            return protocol_error(c, "invalid string in Query message");
        /* An empty query gets EmptyQueryResponse, as from PostgreSQL (psql sends none, drivers
         * probing the connection do). */
        bool empty = true;
        for (size_t i = 0; i < n && empty; i++)
            empty = body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == ';';
        if (empty)
            return pg_build_empty(out, bufs, 'I') == 0 ? ready(c) : oom(c);
        return run(c, (const char *)body, n, true, true);
    }
    case 'P': {
        pg_reader r = pg_reader_make(body, len);
        (void)pg_read_str(&r, NULL); /* the statement name: one statement at a time */
        const char *sql = pg_read_str(&r, NULL);
        if (r.err)
            return protocol_error(c, "invalid Parse message");
        char *copy = strdup(sql);
        if (!copy)
            return oom(c);
        free(a->stmt);
        a->stmt = copy;
        return pg_build_empty(out, bufs, '1') == 0 ? 0 : oom(c);
    }
    case 'B':
        if (!a->stmt) {
            a->skip = true;
            return pg_build_error(out, bufs, "ERROR", "26000", "no statement prepared") == 0
                       ? 0
                       : oom(c);
        }
        return pg_build_empty(out, bufs, '2') == 0 ? 0 : oom(c);
    case 'D': {
        if (len < 1)
            return protocol_error(c, "invalid Describe message");
        int rc = 0;
        if (body[0] == 'S') {
            /* ParameterDescription: console commands take no parameters. */
            size_t m;
            rc = pg_msg_begin(out, bufs, 't', &m);
            rc = rc ? rc : pg_msg_put(out, bufs, "\0\0", 2);
            rc = pg_msg_finish(out, m, rc);
        }
        if (rc != 0)
            return oom(c);
        sink s = {.c = c, .columns = true};
        gw_admin_out o = make_out(&s);
        int cols = a->stmt ? gw_admin_describe(pg_ctx(&c->conn), a->stmt, strlen(a->stmt), &o) : 0;
        if (cols < 0)
            return oom(c);
        return cols == 0 && pg_build_empty(out, bufs, 'n') != 0 ? oom(c) : 0;
    }
    case 'E':
        if (!a->stmt)
            return pg_build_empty(out, bufs, 'I') == 0 ? 0 : oom(c);
        return run(c, a->stmt, strlen(a->stmt), false, false);
    case 'C':
        return pg_build_empty(out, bufs, '3') == 0 ? 0 : oom(c);
    case 'H':
        return 0;
    case 'S':
        a->skip = false;
        return ready(c);
    default:
        /* COPY data or a function call: nothing the console takes. */
        a->skip = t != 'd' && t != 'c' && t != 'f';
        if (pg_build_error(out, bufs, "ERROR", "0A000",
                           "the admin console takes only console commands") != 0)
            return oom(c);
        return a->skip ? 0 : ready(c);
    }
}

void pg_admin_tick(pg_gateway *gw)
{
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &gw->admin_waiting)
    {
        pg_client *c = gw_container_of(it, pg_client, wait_node);
        pg_admin *a = c->admin;
        sink s = {.c = c};
        gw_admin_out out = make_out(&s);
        if (!gw_admin_poll(gw->ctx, &a->wait, &out))
            continue;
        gw_list_remove(&c->wait_node);
        a->busy = false;
        if (a->busy_query && ready(c) != 0)
            continue;
        pg_conn_mark_process(&c->conn);
    }
}
