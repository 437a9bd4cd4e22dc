/*
 * mongo_core: the protocol core's front-wide parts: set-up and teardown of a front, shutdown,
 * the timer tick, read buffers and the names of end reasons. No I/O (see mongo_core.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/mongo/mongo_core.h"
#include "drivers/mongo/mongo_wire.h"
#include "gateway/creds.h"

#define MONGO_EXPIRE_TICKS 100 /* cursors are expired every this many ticks (10 s) */

_Noreturn void mongo__assert_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, "mongo: assertion failed: %s (%s:%d)\n", what, file, line);
    abort();
}

static const char *const end_names[] = {
    [MONGO_END_IO] = "I/O error",
    [MONGO_END_NOMEM] = "out of memory",
    [MONGO_END_SHUTDOWN] = "shutting down",
    [MONGO_END_TLS] = "TLS failed",
    [MONGO_END_CLIENT_LEFT] = "client left",
    [MONGO_END_PROTOCOL] = "protocol error",
    [MONGO_END_REFUSED] = "refused",
    [MONGO_END_SERVER_CLOSED] = "server closed the connection",
    [MONGO_END_BAD_LENGTH] = "invalid message length from the server",
    [MONGO_END_UNEXPECTED] = "unexpected message from the server",
    [MONGO_END_RETIRED] = "the server is no longer the primary or is shutting down",
    [MONGO_END_POOL_TRIM] = "pool is larger than pool_size",
    [MONGO_END_TRADE] = "making room for a connection to another server",
    [MONGO_END_QUERY_TIMEOUT] = "query_timeout",
    [MONGO_END_IDLE] = "max_idle_time",
};

const char *mongo_end_str(mongo_end why)
{
    if ((size_t)why < sizeof end_names / sizeof end_names[0] && end_names[why])
        return end_names[why];
    return "unknown";
}

uint8_t *mongo__buf_get(mongo_front *f)
{
    return gw_bufpool_get(f->bufs, MONGO_READ_CHUNK);
}

void mongo__buf_put(mongo_front *f, uint8_t *p, size_t cap)
{
    gw_bufpool_put(f->bufs, p, cap);
}

int mongo__read_room(mongo_front *f, uint8_t **in, size_t len, size_t *cap, uint8_t **p, size_t *n)
{
    if (!*in) {
        *in = mongo__buf_get(f);
        *cap = *in ? MONGO_READ_CHUNK : 0;
    }
    size_t want = MONGO_READ_CHUNK / 2;
    if (len >= 16) {
        /* Room for the whole message being received, read straight into place. The length
         * was bounded when the header arrived (process_input, the backend's framing). */
        int32_t mlen = mongo_get_i32(*in);
        if (mlen > 0 && (size_t)mlen > len && (size_t)mlen - len > want)
            want = (size_t)mlen - len;
    }
    if (*in && *cap - len < want) {
        /* A pooled block is copied out, so that it goes back to the pool whole. */
        bool pooled = *cap == MONGO_READ_CHUNK;
        uint8_t *grown = pooled ? malloc(len + want) : realloc(*in, len + want);
        if (grown) {
            if (pooled) {
                memcpy(grown, *in, len);
                mongo__buf_put(f, *in, *cap);
            }
            *in = grown;
            *cap = len + want;
        }
    }
    if (!*in || *cap == len) {
        *p = NULL;
        *n = 0;
        return -1;
    }
    *p = *in + len;
    *n = *cap - len;
    return 0;
}

void mongo_core_front_init(mongo_front *f, struct mongo_shell_front *shell, const char *name,
                           gw_bufpool *bufs)
{
    f->shell = shell;
    f->bufs = bufs;
    snprintf(f->name, sizeof f->name, "%s", name);
    gw_list_init(&f->clients);
    gw_list_init(&f->backends);
    gw_list_init(&f->idle);
    gw_list_init(&f->waiters);
    gw_list_init(&f->internal);
    bson_oid_init(&f->service_id, NULL);
    mongo__sessions_init(f);
}

void mongo_core_front_free(mongo_front *f)
{
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &f->internal)
    {
        mongo_internal_msg *im = gw_container_of(it, mongo_internal_msg, node);
        gw_list_remove(it);
        free(im->msg);
        free(im);
    }
    f->n_internal = 0;
    mongo__sessions_free(f);
    gw_creds_free(f->creds);
    f->creds = NULL;
}

void mongo_core_start(mongo_front *f)
{
    mongo__pool_request_connect(f, "");
}

void mongo_core_stop(mongo_front *f)
{
    f->stopping = true;
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &f->clients)
    {
        mongo__client_close(gw_container_of(it, mongo_client, node), MONGO_END_SHUTDOWN, NULL);
    }
    gw_list_foreach_safe(it, tmp, &f->backends)
    {
        mongo__backend_close(gw_container_of(it, mongo_backend, node), MONGO_END_SHUTDOWN, NULL);
    }
}

/* Whether c has nothing under way: no request in hand and no transaction open on a server. */
static bool client_finished(mongo_client *c)
{
    if (c->state != MONGO_CL_IDLE)
        return false;
    for (gw_list *it = c->txns.next; it != &c->txns; it = it->next)
        if (!gw_container_of(it, mongo_txn, owner_node)->ended)
            return false;
    return true;
}

void mongo_core_drain(mongo_front *f)
{
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &f->clients)
    {
        mongo_client *c = gw_container_of(it, mongo_client, node);
        if (client_finished(c))
            mongo__client_close(c, MONGO_END_SHUTDOWN, "its last command is done");
    }
}

void mongo_core_tick(mongo_front *f, uint64_t now)
{
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &f->clients)
    {
        mongo__client_check_timeouts(gw_container_of(it, mongo_client, node), now);
    }
    mongo__pool_check_timeouts(f, now);
    if (++f->ticks % MONGO_EXPIRE_TICKS == 0)
        mongo__sessions_expire(f, now);
}
