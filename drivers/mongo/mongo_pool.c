/*
 * mongo_pool: a front's backend connections. Each carries one request at a time and goes back to
 * the pool when its reply arrives (as mongobetween does: checked out per request, not per
 * client). At most pool_size connections; clients wait in FIFO order. A request pinned to a
 * server (cursor, transaction) takes a connection to that server only; when every connection is
 * elsewhere, one is closed to make room for one to the server it needs.
 */
#include <stdlib.h>
#include <string.h>

#include "drivers/mongo/mongo_core.h"
#include "drivers/mongo/mongo_redact.h"
#include "drivers/mongo/mongo_wire.h"

#define MONGO_RETRY_MS     500   /* after a failed connect, before the next attempt */
#define MONGO_INTERNAL_MAX 10000 /* Sluice's own queued messages (kills, aborts) per front */

/* The only place b->state changes; it keeps front->backends, front->idle and n_backends in
 * step with the state, and aborts on a change that cannot happen. */
void mongo__backend_set_state(mongo_backend *b, mongo_backend_state next)
{
    mongo_front *f = b->front;
    mongo_backend_state prev = b->state;
    switch (next) {
    case MONGO_BE_NEW:
        mongo_assert(!"a backend never becomes new again");
        break;
    case MONGO_BE_IDLE:
        mongo_assert(prev == MONGO_BE_BUSY);
        break;
    case MONGO_BE_BUSY:
        mongo_assert(prev == MONGO_BE_NEW || prev == MONGO_BE_IDLE);
        break;
    case MONGO_BE_CLOSING:
        mongo_assert(prev == MONGO_BE_IDLE || prev == MONGO_BE_BUSY);
        break;
    }
    if (prev == MONGO_BE_IDLE)
        gw_list_remove(&b->idle_node);
    if (prev == MONGO_BE_NEW) {
        gw_list_push_tail(&f->backends, &b->node);
        f->n_backends++;
    }
    if (next == MONGO_BE_IDLE) {
        gw_list_push_head(&f->idle, &b->idle_node); /* LIFO: the warmest is reused */
        b->idle_since = mongo_shell_now(f);
    }
    if (next == MONGO_BE_CLOSING) {
        gw_list_remove(&b->node);
        f->n_backends--;
    }
    b->state = next;
}

static bool host_fits(const char *want, const char *host)
{
    return !want[0] || strcmp(want, host) == 0;
}

static bool backing_off(mongo_front *f)
{
    return f->last_fail && mongo_shell_now(f) - f->last_fail < MONGO_RETRY_MS;
}

/* Opens connections while there is room and someone waits: for the first waiter's server. */
void mongo__pool_connect_more(mongo_front *f)
{
    if (f->stopping || backing_off(f))
        return;
    const char *target = NULL;
    gw_list *it = mongo_shell_paused(f) ? NULL : gw_list_first(&f->waiters);
    if (it)
        target = gw_container_of(it, mongo_client, wait_node)->r.pin;
    else if ((it = gw_list_first(&f->internal)))
        target = gw_container_of(it, mongo_internal_msg, node)->host;
    if (!target)
        return;
    /* One connect in flight per queued need is enough; the rest come as the first succeed. */
    if (f->n_connecting == 0 && f->n_backends < (uint32_t)f->pool_size)
        mongo__pool_request_connect(f, target);
}

void mongo__pool_request_connect(mongo_front *f, const char *target)
{
    if (mongo_shell_connect(f, target ? target : "") == 0)
        f->n_connecting++;
}

static void send_internal(mongo_backend *b, mongo_internal_msg *im)
{
    mongo_front *f = b->front;
    b->internal = true;
    b->expect_id = mongo__next_id(f);
    b->busy_since = mongo_shell_now(f);
    mongo_rewrite_ids(im->msg, im->len, b->expect_id, 0);
    int rc = mongo__backend_send(b, im->msg, im->len, im->len);
    free(im);
    if (rc != 0)
        mongo__backend_close(b, MONGO_END_IO, mongo_shell_strerror(rc));
}

void mongo__pool_release(mongo_backend *b)
{
    mongo_front *f = b->front;
    mongo_assert(b->state == MONGO_BE_BUSY);
    b->client = NULL;
    b->internal = false;
    b->awaiting_write = false;
    b->busy_since = 0;
    if (f->stopping) {
        mongo__backend_close(b, MONGO_END_SHUTDOWN, NULL);
        return;
    }
    if (b->retire) {
        mongo__backend_close(b, MONGO_END_RETIRED, NULL);
        return;
    }
    if ((int)f->n_backends > f->pool_size) {
        mongo__backend_close(b, MONGO_END_POOL_TRIM, NULL);
        return;
    }
    for (gw_list *it = f->internal.next; it != &f->internal; it = it->next) {
        mongo_internal_msg *im = gw_container_of(it, mongo_internal_msg, node);
        if (host_fits(im->host, b->host)) {
            gw_list_remove(it);
            f->n_internal--;
            send_internal(b, im);
            return;
        }
    }
    /* A paused entry's waiters keep waiting (mongo_core_resume); Sluice's own cleanup goes on. */
    bool serve = !mongo_shell_paused(f);
    for (gw_list *it = f->waiters.next; serve && it != &f->waiters; it = it->next) {
        mongo_client *c = gw_container_of(it, mongo_client, wait_node);
        if (host_fits(c->r.pin, b->host)) {
            mongo__client_got_backend(c, b);
            return;
        }
    }
    if ((serve && !gw_list_empty(&f->waiters)) || !gw_list_empty(&f->internal)) {
        /* Everyone waiting needs another server: trade this connection for one there. */
        if (f->n_backends + f->n_connecting >= (uint32_t)f->pool_size) {
            mongo__backend_close(b, MONGO_END_TRADE, NULL);
            return;
        }
    }
    mongo__backend_set_state(b, MONGO_BE_IDLE);
    mongo__pool_connect_more(f);
}

void mongo__pool_acquire(mongo_client *c)
{
    mongo_front *f = c->front;
    mongo_assert(c->state == MONGO_CL_WAITING);
    if (mongo_shell_paused(f))
        return; /* queued until RESUME, the client unanswered (as PgBouncer's PAUSE) */
    for (gw_list *it = f->idle.next; it != &f->idle; it = it->next) {
        mongo_backend *b = gw_container_of(it, mongo_backend, idle_node);
        if (host_fits(c->r.pin, b->host)) {
            mongo__backend_set_state(b, MONGO_BE_BUSY);
            mongo__client_got_backend(c, b);
            return;
        }
    }
    if (backing_off(f) && f->n_backends == 0 && f->n_connecting == 0) {
        mongo__client_backend_lost(c, f->last_error);
        return;
    }
    if (f->n_backends + f->n_connecting < (uint32_t)f->pool_size && !backing_off(f))
        mongo__pool_request_connect(f, c->r.pin);
    else if (!gw_list_empty(&f->idle) && f->n_connecting == 0) {
        /* Idle connections, all to other servers, and no room: trade one. */
        mongo_backend *b = gw_container_of(f->idle.next, mongo_backend, idle_node);
        mongo__backend_close(b, MONGO_END_TRADE, NULL);
    }
}

void mongo_core_resume(mongo_front *f)
{
    if (f->stopping || mongo_shell_paused(f))
        return;
    /* Each idle connection goes through release once, oldest first (release puts one it keeps
     * back at the head): it serves the first waiter that fits, or stays, or is traded. */
    size_t n = 0;
    for (gw_list *it = f->idle.next; it != &f->idle; it = it->next)
        n++;
    for (; n > 0 && !gw_list_empty(&f->idle); n--) {
        mongo_backend *b = gw_container_of(f->idle.prev, mongo_backend, idle_node);
        mongo__backend_set_state(b, MONGO_BE_BUSY);
        mongo__pool_release(b);
    }
    mongo__pool_connect_more(f);
}

void mongo__pool_connect_failed(mongo_front *f, const char *target, const char *raw_error)
{
    /* libmongoc's errors end up in the log and in clients' error replies. */
    char error[sizeof f->last_error];
    mongo_redact(raw_error, error, sizeof error);
    mongo_warn(f, "cannot open a backend connection: %s", error);
    snprintf(f->last_error, sizeof f->last_error, "%s", error);
    f->last_fail = mongo_shell_now(f);
    if (f->last_fail == 0)
        f->last_fail = 1;
    /* Those who need the server that failed, or anything when no connection may come free. */
    bool nothing_left = f->n_backends == 0 && f->n_connecting == 0;
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &f->waiters)
    {
        mongo_client *c = gw_container_of(it, mongo_client, wait_node);
        if (nothing_left || (target[0] && strcmp(c->r.pin, target) == 0))
            mongo__client_backend_lost(c, error);
    }
    gw_list_foreach_safe(it, tmp, &f->internal)
    {
        mongo_internal_msg *im = gw_container_of(it, mongo_internal_msg, node);
        if (nothing_left || (target[0] && strcmp(im->host, target) == 0)) {
            gw_list_remove(it);
            f->n_internal--;
            free(im->msg);
            free(im);
        }
    }
}

void mongo__pool_fire_and_forget(mongo_front *f, const char *host, const bson_t *cmd)
{
    mongo_internal_msg *im = calloc(1, sizeof *im);
    if (!im)
        return;
    snprintf(im->host, sizeof im->host, "%s", host);
    im->msg = mongo_build_msg(cmd, 0, 0, false, &im->len);
    if (!im->msg) {
        free(im);
        return;
    }
    for (gw_list *it = f->idle.next; it != &f->idle; it = it->next) {
        mongo_backend *b = gw_container_of(it, mongo_backend, idle_node);
        if (host_fits(host, b->host)) {
            mongo__backend_set_state(b, MONGO_BE_BUSY);
            send_internal(b, im);
            return;
        }
    }
    if (f->n_internal >= MONGO_INTERNAL_MAX) {
        /* The server ends idle cursors and transactions itself in the end. */
        mongo_warn(f, "too many cleanup commands queued; dropping one");
        free(im->msg);
        free(im);
        return;
    }
    gw_list_push_tail(&f->internal, &im->node);
    f->n_internal++;
    mongo__pool_connect_more(f);
}

static mongo_backend *overdue(mongo_front *f, uint64_t now, uint64_t qt)
{
    for (gw_list *it = f->backends.next; it != &f->backends; it = it->next) {
        mongo_backend *b = gw_container_of(it, mongo_backend, node);
        if (b->state == MONGO_BE_BUSY && b->busy_since &&
            now - b->busy_since > qt + MONGO_TIMEOUT_GRACE)
            return b;
    }
    return NULL;
}

void mongo__pool_check_timeouts(mongo_front *f, uint64_t now)
{
    uint64_t qt = f->query_timeout_ms;
    /* The server was asked to stop at maxTimeMS; past that and a grace, give up on the
     * connection. One at a time from the start of the list: failing a client can close other
     * connections (a trade for a pinned request). */
    mongo_backend *b;
    while (qt && (b = overdue(f, now, qt))) {
        mongo_client *c = b->client;
        b->client = NULL;
        b->busy_since = 0;
        if (c)
            mongo__client_fail(c, 50, "MaxTimeMSExpired",
                               "query_timeout: no reply from the server in time; the "
                               "connection was retired");
        mongo__backend_close(b, MONGO_END_QUERY_TIMEOUT, NULL);
    }
    /* max_idle_time: the connections idle longest (the tail of the LIFO list) close first,
     * down to min_pool_size. */
    while (f->max_idle_ms && f->n_backends > (uint32_t)f->min_pool_size &&
           !gw_list_empty(&f->idle)) {
        mongo_backend *idle = gw_container_of(f->idle.prev, mongo_backend, idle_node);
        if (now - idle->idle_since <= f->max_idle_ms)
            break;
        mongo__backend_close(idle, MONGO_END_IDLE, NULL);
    }
    /* Retry for those still waiting after a failed attempt. */
    mongo__pool_connect_more(f);
    /* min_pool_size: one attempt at a time until it is reached (as connect_more does). */
    if (!f->stopping && !backing_off(f) && f->n_connecting == 0 &&
        f->n_backends < (uint32_t)f->min_pool_size)
        mongo__pool_request_connect(f, NULL);
}
