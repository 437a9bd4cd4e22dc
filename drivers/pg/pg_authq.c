/*
 * pg_authq: the shell's side of client authentication: the client's address (for hba lines),
 * and auth_query lookups. The secret of a user missing from the users file is
 * looked up on the server with auth_query (PgBouncer's default reads pg_shadow), over a libpq
 * connection of auth_user to auth_dbname (else the client's database), driven on the loop like
 * every server connection (PQconnectPoll, then PQsendQueryParams and PQconsumeInput on
 * readiness): the loop never blocks and other clients never wait behind a lookup.
 *
 * One connection per lookup, closed with the answer: lookups happen once per login of a user
 * missing from the file, and a connection that lives only as long as one lookup cannot be left
 * in a state another lookup inherits. A lookup belongs to its client: when the client closes
 * first (client_login_timeout bounds how long it waits), the lookup is dropped with it
 * (pg_shell_auth_lookup_cancel).
 *
 * Calls up into the core only through pg_auth_lookup_done.
 */
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_io.h"
#include "drivers/pg/pg_shell.h"
#include "drivers/pg/pg_tlskw.h"

typedef struct pg_authq {
    uv_poll_t *poll; /* on PQsocket, replaced when libpq moves to another address */
    PGconn *pq;
    pg_client *client; /* NULL once the client closed or the answer was given */
    int fd;
    unsigned handles; /* poll handles not yet closed: the lookup is freed after the last */
    bool sent;        /* the query went out; the answer is awaited */
} pg_authq;

static const char *default_query = "SELECT usename, passwd FROM pg_shadow WHERE usename=$1";

static void free_if_done(pg_authq *q)
{
    if (q->handles == 0 && !q->client) {
        PQfinish(q->pq);
        free(q);
    }
}

static void on_poll_closed(uv_handle_t *h)
{
    pg_authq *q = h->data;
    free(h);
    q->handles--;
    free_if_done(q);
}

static void close_poll(pg_authq *q)
{
    if (q->poll) {
        uv_close((uv_handle_t *)q->poll, on_poll_closed);
        q->poll = NULL;
    }
}

/* Ends the lookup: the client (if still waiting) gets secret or error, then the connection
 * closes. secret and error may point into libpq's memory: the core copies what it keeps. */
static void finish(pg_authq *q, const char *secret, const char *error)
{
    pg_client *c = q->client;
    q->client = NULL;
    if (c) {
        c->login->authq = NULL;
        pg_auth_lookup_done(c, secret, error);
    }
    close_poll(q);
    free_if_done(q);
}

static void on_poll(uv_poll_t *h, int status, int events);

static int watch(pg_authq *q, gw_ctx *ctx, int events)
{
    int fd = PQsocket(q->pq);
    if (fd < 0)
        return UV_EBADF;
    if (!q->poll || fd != q->fd) {
        /* libpq moved to another address (localhost's ::1, then 127.0.0.1): a new handle. */
        uv_poll_t *h = malloc(sizeof *h);
        if (!h)
            return UV_ENOMEM;
        int rc = uv_poll_init(ctx->loop, h, fd);
        if (rc != 0) {
            free(h);
            return rc;
        }
        h->data = q;
        close_poll(q);
        q->poll = h;
        q->handles++;
        q->fd = fd;
    }
    return uv_poll_start(q->poll, events, on_poll);
}

/* The answer: no row (no such user), or the second column of the first row (PgBouncer reads
 * usename, passwd); a NULL or empty password is treated as no user, so it cannot log in. */
static void read_answer(pg_authq *q)
{
    PGresult *res;
    const char *secret = NULL, *error = NULL;
    char *copy = NULL;
    bool answered = false;
    while ((res = PQgetResult(q->pq)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (!answered && st == PGRES_TUPLES_OK) {
            answered = true;
            if (PQntuples(res) > 0 && PQnfields(res) >= 2 && !PQgetisnull(res, 0, 1)) {
                copy = strdup(PQgetvalue(res, 0, 1));
                if (!copy)
                    error = "out of memory";
            }
        } else if (!answered) {
            answered = true;
            error = "auth_query failed";
            gw_warn(pg_ctx(&q->client->conn), "auth_query failed: %s", PQresultErrorMessage(res));
        }
        PQclear(res);
    }
    secret = copy && *copy ? copy : NULL;
    finish(q, secret, error);
    free(copy);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)events;
    pg_authq *q = h->data;
    if (!q->client)
        return;
    gw_ctx *ctx = pg_ctx(&q->client->conn);
    if (!q->sent) {
        PostgresPollingStatusType st = PQconnectPoll(q->pq);
        if (st == PGRES_POLLING_READING || st == PGRES_POLLING_WRITING) {
            if (watch(q, ctx, st == PGRES_POLLING_READING ? UV_READABLE : UV_WRITABLE) != 0)
                goto failed;
            return;
        }
        if (st != PGRES_POLLING_OK)
            goto failed;
        PQsetnonblocking(q->pq, 1);
        const cfg *cf = ctx->cfg;
        const char *sql = cfg_db_auth_query(cf, cfg_find_database(cf, pg_auth_dbname(q->client)));
        const char *user = pg_auth_user(q->client);
        if (!sql || !*sql)
            sql = default_query;
        if (!PQsendQueryParams(q->pq, sql, 1, NULL, &user, NULL, NULL, 0))
            goto failed;
        q->sent = true;
        if (watch(q, ctx, UV_READABLE) != 0)
            goto failed;
        return;
    }
    if (status < 0 || !PQconsumeInput(q->pq))
        goto failed;
    if (!PQisBusy(q->pq))
        read_answer(q);
    return;
failed:
    gw_warn(ctx, "auth_query lookup for %s failed: %s", pg_auth_user(q->client),
            PQerrorMessage(q->pq));
    finish(q, NULL, "auth_query lookup failed");
}

/* The database line's keywords with auth_user as the user and auth_dbname (else the client's
 * database) as the database, TLS per the server_tls_* keys, GSS encryption off and ~/.pgpass
 * ignored as for pool connections, and auth_user's password from the users file when the line gives
 * none. */
static PGconn *start(const pg_client *c, const cfg *cf)
{
    const cfg_database *db = cfg_find_database(cf, pg_auth_dbname(c));
    const char *auth_user = cfg_db_auth_user(cf, db);
    const char *auth_db = cfg_db_auth_dbname(cf, db);
    if (!db || !auth_user || !*auth_user)
        return NULL;
    if (!auth_db || !*auth_db)
        auth_db = pg_auth_dbname(c);
    size_t n = db->n_conn, k = 0;
    const char **kw = calloc(n + 7 + PG_TLSKW_MAX, sizeof *kw),
               **val = calloc(n + 7 + PG_TLSKW_MAX, sizeof *val);
    PGconn *pq = NULL;
    pg_tlskw tls = {0};
    if (!kw || !val || pg_tlskw_build(cf, db, &tls) != 0)
        goto out;
    bool has_pw = false, has_db = false, has_gss = false, has_pass = false;
    for (size_t i = 0; i < n; i++) {
        const char *key = db->conn[i].key;
        if (strcmp(key, "user") == 0)
            continue;
        has_pw |= strcmp(key, "password") == 0;
        has_gss |= strcmp(key, "gssencmode") == 0;
        has_pass |= strcmp(key, "passfile") == 0;
        kw[k] = key;
        val[k] = db->conn[i].value;
        if (strcmp(key, "dbname") == 0) {
            has_db = true;
            if (cfg_db_auth_dbname(cf, db) && *cfg_db_auth_dbname(cf, db))
                val[k] = auth_db;
        }
        k++;
    }
#define ADD(K, V) (kw[k] = (K), val[k] = (V), k++)
    ADD("user", auth_user);
    if (!has_db)
        ADD("dbname", auth_db);
    for (size_t i = 0; i < tls.n; i++)
        ADD(tls.kw[i], tls.val[i]);
    if (!has_gss)
        ADD("gssencmode", "disable");
    if (!has_pass)
        ADD("passfile", "/dev/null/no-passfile");
    const auth_secret *s = cf->users ? auth_userlist_find(cf->users, auth_user) : NULL;
    if (!has_pw && s && s->kind == AUTH_SECRET_PLAIN)
        ADD("password", s->text);
#undef ADD
    pq = PQconnectStartParams(kw, val, 0);
out:
    pg_tlskw_free(&tls);
    free(kw);
    free(val);
    return pq;
}

int pg_shell_client_peer(const pg_client *c, struct sockaddr_storage *out)
{
    gw_stream *h = pg_conn_stream((pg_conn *)&c->conn);
    if (h->handle.type != UV_TCP)
        return 0;
    int len = (int)sizeof *out;
    return uv_tcp_getpeername(&h->tcp, (struct sockaddr *)out, &len) == 0 ? 1 : -1;
}

int pg_shell_auth_lookup(pg_client *c)
{
    gw_ctx *ctx = pg_ctx(&c->conn);
    pg_authq *q = calloc(1, sizeof *q);
    if (!q)
        return -1;
    q->pq = start(c, ctx->cfg);
    if (!q->pq || PQstatus(q->pq) == CONNECTION_BAD) {
        gw_warn(ctx, "auth_query lookup for %s could not start: %s", pg_auth_user(c),
                q->pq ? PQerrorMessage(q->pq) : "no auth_user or no database line");
        PQfinish(q->pq);
        free(q);
        return -1;
    }
    q->client = c;
    if (watch(q, ctx, UV_WRITABLE) != 0) {
        q->client = NULL;
        close_poll(q);
        free_if_done(q);
        return -1;
    }
    c->login->authq = q;
    return 0;
}

void pg_shell_auth_lookup_cancel(pg_client *c)
{
    pg_authq *q = c->login->authq;
    if (!q)
        return;
    c->login->authq = NULL;
    q->client = NULL;
    close_poll(q);
    free_if_done(q);
}
