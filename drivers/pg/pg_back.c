/*
 * pg_back: backend messages on their way from a server to its client (core): which are held
 * whole and which stream through, the request queue they pop, parameter reports, and the
 * ReadyForQuery that ends a transaction and may release the server.
 */
#include <string.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_relay.h"
#include "drivers/pg/pg_wire.h"

static bool head_is_skip_query(pg_server *s)
{
    pg_req *r = pg_reqq_head(s);
    return r && r->action == PG_REQ_SKIP && r->type == 'Q';
}

/* Every backend message type after the login (PostgreSQL's protocol, "Message Formats"), as a
 * table because every server message is looked up. Messages that change state or pop the queue
 * are handled whole (they are small); row data, copy data and notices stream through. */
enum { SV_KNOWN = 1, SV_WHOLE = 2 };
static const uint8_t server_types[256] = {
    ['1'] = SV_KNOWN | SV_WHOLE,
    ['2'] = SV_KNOWN | SV_WHOLE,
    ['3'] = SV_KNOWN | SV_WHOLE,
    ['A'] = SV_KNOWN | SV_WHOLE,
    ['C'] = SV_KNOWN | SV_WHOLE,
    ['E'] = SV_KNOWN | SV_WHOLE,
    ['I'] = SV_KNOWN | SV_WHOLE,
    ['n'] = SV_KNOWN | SV_WHOLE,
    ['s'] = SV_KNOWN | SV_WHOLE,
    ['S'] = SV_KNOWN | SV_WHOLE,
    ['T'] = SV_KNOWN | SV_WHOLE,
    ['Z'] = SV_KNOWN | SV_WHOLE,
    ['c'] = SV_KNOWN,
    ['D'] = SV_KNOWN,
    ['d'] = SV_KNOWN,
    ['G'] = SV_KNOWN | SV_WHOLE,
    ['H'] = SV_KNOWN,
    ['N'] = SV_KNOWN,
    ['t'] = SV_KNOWN,
    ['V'] = SV_KNOWN,
    ['W'] = SV_KNOWN,
};

const char *pg_relay_server_header(pg_server *s, uint8_t t, bool *drop, bool *whole)
{
    if (t == 'R' || t == 'K' || t == 'v')
        return "login message from server after the login";
    /* Streamed through as if it were row data, a type Sluice does not know would leave the
     * client waiting for an end that never comes (PgBouncer also drops such a server). */
    if (!(server_types[t] & SV_KNOWN))
        return "unknown message type from server";
    *whole = (server_types[t] & SV_WHOLE) != 0;
    *drop = !s->client || head_is_skip_query(s);
    return NULL;
}

static bool tag_is(const uint8_t *body, size_t len, const char *tag)
{
    size_t n = strlen(tag);
    return len >= n + 1 && memcmp(body, tag, n) == 0 && body[n] == 0;
}

/* The value a parameter reported during a possible reset really has for client c: its startup
 * value when the server went back to its own default where c started with another value;
 * NULL when the report stands as it is. */
static const char *client_reset_value(pg_server *s, pg_client *c, const char *k, const char *v)
{
    const char *mine = pg_params_get(&c->startup, k);
    const char *base = pg_params_get(&s->pool->defaults, k);
    if (!mine || !base || strcmp(v, base) != 0 || strcmp(mine, v) == 0 || !pg_param_settable(k))
        return NULL;
    return mine;
}

int pg_relay_server_msg(pg_server *s, uint8_t t, const uint8_t *msg, size_t total)
{
    pg_gateway *gw = s->conn.gw;
    gw_ctx *ctx = gw->ctx;
    const uint8_t *body = msg + 5;
    size_t len = total - 5;
    pg_req *head = pg_reqq_head(s);
    bool skipq = head_is_skip_query(s);
    bool fwd = s->client && !skipq;
    switch (t) {
    case '1':
    case '3':
        if (head && head->type == (t == '1' ? 'P' : 'C')) {
            fwd = fwd && head->action == PG_REQ_FORWARD;
            if (t == '1' && head->unnamed) {
                if (s->unnamed == head->stmt)
                    s->unnamed_seq = 0;
            } else if (t == '1' && head->stmt) {
                head->stmt->validated_in = s->pool;
                pg_server_stmts_confirm(&s->stmts, head->stmt);
            }
            pg_reqq_pop(s);
        }
        break;
    case '2':
        if (head && head->type == 'B')
            pg_reqq_pop(s);
        break;
    case 'n':
    case 'T':
        if (head && head->type == 'D')
            pg_reqq_pop(s);
        break;
    case 's':
    case 'I':
        if (head && head->type == 'E')
            pg_reqq_pop(s);
        break;
    case 'G':
        if (head && head->action == PG_REQ_FORWARD && (head->type == 'Q' || head->type == 'E')) {
            const char *why = pg_copy_in_begins(s);
            if (why && s->client) {
                pg_client_fatal(s->client, PG_END_PROTOCOL, "08P01", "%s", why);
                return -1;
            }
        }
        break;
    case 'C':
        if (s->copy_in && head && (head->type == 'Q' || head->type == 'E'))
            (void)pg_copy_in_ends(s, false);
        if (tag_is(body, len, "DISCARD ALL") || tag_is(body, len, "DEALLOCATE ALL")) {
            pg_server_stmts_clear(&s->stmts, &gw->stmts);
            if (fwd)
                pg_client_stmts_clear(&s->client->stmts, &gw->stmts);
        }
        if (head && head->type == 'E')
            pg_reqq_pop(s);
        break;
    case 'E':
        if (skipq) {
            const char *m = pg_error_field(body, len, 'M');
            gw_warn(ctx, "server %u: a query Sluice sent failed: %s", s->id, m ? m : "?");
            if (s->state == PG_SV_RESETTING && s->checking) {
                /* The waiting clients get another server instead. */
                pg_server_close(s, PG_END_CHECK_FAILED, "server_check_query failed");
                return -1;
            }
            if (s->state == PG_SV_RESETTING) {
                /* Its session may still hold the last client's state. */
                pg_server_close(s, PG_END_RESET_FAILED,
                                "the reset of the server connection failed");
                return -1;
            }
        }
        if (fwd)
            pg_count_error(s->pool, body, len);
        if (s->copy_in) {
            const char *why = pg_copy_in_ends(s, true);
            if (why && s->client) {
                pg_client_fatal(s->client, PG_END_PROTOCOL, "08P01", "%s", why);
                return -1;
            }
        }
        if (head && strchr("PBDEC", head->type))
            pg_reqq_error_pop(s);
        break;
    case 'A':
        /* Only a pinned client (or one in session mode) can have LISTENed on this server;
         * anyone else linked to it now must not see another session's notifications. */
        fwd = fwd && (s->client->pinned || s->pool->mode != CFG_POOL_TRANSACTION);
        break;
    case 'Z':
        if (len != 1) {
            pg_server_close(s, PG_END_PROTOCOL, "malformed ReadyForQuery");
            return -1;
        }
        s->tx = (char)body[0];
        if (head && (head->type == 'S' || head->type == 'Q' || head->type == 'F')) {
            if (head->action == PG_REQ_FORWARD)
                pg_count_ready(s);
            pg_reqq_pop(s);
        }
        break;
    case 'S': {
        pg_reader r = pg_reader_make(body, len);
        const char *k = pg_read_str(&r, NULL);
        const char *v = pg_read_str(&r, NULL);
        if (r.err)
            break;
        pg_params_set(&s->params, k, v);
        pg_client *c = s->client;
        if (!c) {
            s->synced = false;
            break;
        }
        const char *mine = s->reset_possible ? client_reset_value(s, c, k, v) : NULL;
        if (mine) {
            /* The client reset k: to its startup value, as on a server of its own. */
            pg_params_set(&c->params, k, mine);
            s->synced = false;
            s->resync = true;
            if (fwd && pg_build_param_status(&c->conn.out, gw->bufs, k, mine) != 0) {
                pg_server_close(s, PG_END_NO_MEMORY, "out of memory");
                return -1;
            }
            fwd = false;
            pg_conn_mark(&c->conn);
        } else {
            /* Server and client changed alike: the server still matches the client. */
            pg_params_set(&c->params, k, v);
            s->synced_fp = pg_params_fingerprint(&c->params);
        }
        break;
    }
    default:
        break;
    }
    if (fwd) {
        if (gw_buf_append(&s->client->conn.out, gw->bufs, msg, total) != 0) {
            pg_server_close(s, PG_END_NO_MEMORY, "out of memory");
            return -1;
        }
        pg_conn_mark(&s->client->conn);
    }
    if (pg_relay_drain_fakes(s) != 0)
        return -1;
    if (t != 'Z')
        return 0;
    if (s->client && s->client->stalled) {
        s->client->stalled = false;
        pg_conn_mark_process(&s->client->conn);
    }
    uint64_t now = gw_now(ctx);
    if (s->q.count == 0) {
        s->reset_possible = false;
        /* A client that stays on this server gets its reset values SET again now. */
        if (s->resync && s->client && s->tx != 'E' &&
            (s->tx == 'T' || s->pool->mode != CFG_POOL_TRANSACTION || s->client->pinned)) {
            if (pg_relay_sync_params(s, s->client) != 0) {
                pg_server_close(s, PG_END_NO_MEMORY, "out of memory");
                return -1;
            }
        }
    }
    if (s->q.count == 0) {
        s->busy_since = 0;
        s->cancel_at = 0;
        s->idle_since = now;
        if (s->tx == 'I') {
            if (s->state == PG_SV_RESETTING)
                pg_pool_server_ready(s);
            else
                pg_pool_release_if_done(s);
        }
    } else {
        s->busy_since = now;
    }
    return 0;
}
