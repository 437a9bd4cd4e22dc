/*
 * pg_copy: COPY FROM STDIN as the request queue sees it (core).
 *
 * From its CopyInResponse until it reads the client's CopyDone or CopyFail, or fails, the
 * server reads every client message as COPY data. It ignores a Sync there (answering nothing)
 * and fails the COPY on any other request. Clients send such a Sync honestly: libpq sends
 * Parse, Bind, Describe, Execute and Sync for a COPY in the extended protocol, then the data,
 * CopyDone and another Sync. Queued as a request, the ignored Sync would wait for a
 * ReadyForQuery that never comes and keep the server from the pool for good. A Sync sent while
 * the COPY is known to run is not queued; one queued before its CopyInResponse came becomes a
 * silent entry, popped unanswered, as do the client's CopyDone and CopyFail sent that early:
 * they mark where the COPY data ends in the queue.
 *
 * Which Syncs the server ignores is certain for those sent before any COPY data (it reads them
 * first), and for all of them when the COPY runs to the client's CopyDone or CopyFail. When it
 * fails earlier (bad data, a timeout, a cancel) with a Sync sent among the data still queued,
 * the server may have read that Sync before or after failing: no count of ReadyForQuery is
 * sure, and a wrong one would hand this client's answers to the next one. That client and its
 * server are closed instead, as they are for a request among the COPY data.
 */
#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_relay.h"

const char *pg_copy_client_msg_slow(pg_server *s, uint8_t t, pg_copy_queue *queue)
{
    *queue = PG_COPY_USUAL;
    switch (t) {
    case 'd':
        s->copy_sent = true;
        return NULL;
    case 'c':
    case 'f':
        /* The end of the data of a COPY whose CopyInResponse has not come yet: a marker for
         * pg_copy_in_begins. Nothing queued: no COPY runs (the tail of a failed one). */
        if (!s->copy_open && s->q.count > 0)
            *queue = PG_COPY_MARKER;
        s->copy_sent = true;
        s->copy_open = false;
        return NULL;
    case 'S':
        /* Sent during the COPY's data: nothing to convert later, so not queued at all. */
        if (s->copy_open) {
            *queue = PG_COPY_NONE;
            s->copy_unsure = s->copy_unsure || s->copy_sent;
        }
        return NULL;
    case 'H':
        return NULL;
    default:
        if (s->copy_open)
            return "a request among COPY data: the server would fail the COPY on it";
        s->copy_sent = false;
        return NULL;
    }
}

const char *pg_copy_in_begins(pg_server *s)
{
    pg_reqq *q = &s->q;
    bool open = true;
    /* What the client sent after the COPY's own request (the head) up to its CopyDone or
     * CopyFail reaches the server as data of this COPY. A Query may hold several COPYs: the
     * markers of those that ended are passed over, as are the Syncs already made silent. */
    for (uint32_t i = 1; i < q->count && open; i++) {
        pg_req *r = &q->items[(q->head + i) % q->cap];
        if ((r->type == 'c' || r->type == 'f') && !r->copy_ended)
            open = false;
        else if (r->action == PG_REQ_SILENT)
            continue;
        else if (r->type != 'S' || r->action != PG_REQ_FORWARD)
            return "a request among COPY data: the server would fail the COPY on it";
        else {
            r->action = PG_REQ_SILENT;
            s->copy_unsure = s->copy_unsure || r->after_copy;
        }
    }
    s->copy_in = true;
    s->copy_open = open;
    s->copy_marked = !open;
    return NULL;
}

const char *pg_copy_in_ends(pg_server *s, bool failed)
{
    pg_reqq *q = &s->q;
    /* Its marker, if it has one, is the first one after the head not yet ended. */
    for (uint32_t i = 1; i < q->count && s->copy_marked; i++) {
        pg_req *r = &q->items[(q->head + i) % q->cap];
        if ((r->type == 'c' || r->type == 'f') && !r->copy_ended) {
            r->copy_ended = true;
            break;
        }
    }
    bool unsure = failed && s->copy_unsure;
    s->copy_in = s->copy_open = s->copy_unsure = s->copy_marked = false;
    return unsure ? "the COPY failed with a Sync among its data: which Syncs the server read is "
                    "unknown"
                  : NULL;
}
