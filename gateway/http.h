/*
 * gw_http: a small HTTP/1.1 server on the loop for the operations endpoints (metrics, probes).
 *
 * It answers GET requests for fixed paths through one handler and nothing else: no files, no
 * proxying, no request bodies. Requests are parsed by libhttp-parser. Everything an outsider can
 * make it hold is bounded: the request (head and body) by max_request bytes, the time to send it
 * by request_deadline_ms (a slowloris is closed by a timer), the time to take the answer by
 * write_deadline_ms, and the connections at once by max_conns (one more is told 503 and closed).
 * Every connection is closed after its answer.
 *
 * The server never keeps the process alive: its handles are unreferenced, so the loop ends when
 * the front ends have finished; the owner then calls gw_http_stop and runs the loop once more.
 */
#ifndef SLUICE_GW_HTTP_H
#define SLUICE_GW_HTTP_H

#include <stdint.h>
#include <stdio.h>

#include "gateway/gw.h"

typedef struct gw_http_limits {
    size_t max_request;           /* bytes of request head and body; more is answered 431 */
    uint64_t request_deadline_ms; /* from accept to a complete request; then closed */
    uint64_t write_deadline_ms;   /* for the client to take the answer; then closed */
    unsigned max_conns;           /* connections served at once; more get 503 */
} gw_http_limits;

/* What a handler fills in. status starts at 200, content_type at text/plain; body is an
 * in-memory stream the server owns. */
typedef struct gw_http_reply {
    int status;
    const char *content_type; /* a static string */
    FILE *body;
} gw_http_reply;

/* Answers a GET of path (the query string removed, not decoded). Sets r->status to 404 for a
 * path it does not serve. Runs on the loop: must not block. */
typedef void (*gw_http_handler)(void *arg, const char *path, gw_http_reply *r);

typedef struct gw_http gw_http;

/* Listens on addr:port (addr "*" = every IPv4 address). Returns 0 and a server in *out, or a
 * negative errno-style code (nothing left open). The handler and arg must outlive the server. */
int gw_http_start(gw_ctx *ctx, const char *addr, int port, const gw_http_limits *limits,
                  gw_http_handler handler, void *arg, gw_http **out);

/* Closes the listener and every connection; the memory is released once the handles have
 * closed (run the loop). NULL is allowed. */
void gw_http_stop(gw_http *h);

/* The reason phrase of a status this server sends ("OK", "Not Found", ...). */
const char *gw_http_reason(int status);

#endif
