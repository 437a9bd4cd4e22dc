/* gw_http: the operations endpoints' HTTP server (see http.h for what it bounds and why). */
#define _GNU_SOURCE /* fopencookie, asprintf */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

#include "gateway/http.h"
#include "gateway/list.h"

#define URL_MAX    256  /* longer request targets are answered 414; ours are a few bytes */
#define READ_CHUNK 2048 /* per read; the request as a whole is bounded by max_request */

/* A connection's state; its handles and timer follow from it (conn_set_state). */
typedef enum http_state {
    HTTP_READING, /* reading the request; the request deadline runs */
    HTTP_WRITING, /* the answer is queued, reads stopped; the write deadline runs */
    HTTP_CLOSING, /* transient: both handles closing; freed when the second has closed */
} http_state;

struct gw_http {
    gw_ctx *ctx;
    uv_tcp_t listener;
    bool listener_open; /* until its close callback */
    bool stopping;      /* gw_http_stop called: freed once the listener and conns are gone */
    gw_http_limits limits;
    gw_http_handler handler;
    void *arg;
    gw_list conns; /* http_conn.link, every connection not yet freed */
    unsigned n_conns;
};

typedef struct http_conn {
    gw_list link;
    gw_http *srv;
    http_state state;
    uv_tcp_t tcp;
    uv_timer_t timer;
    int open_handles; /* freed when it drops to 0 */
    http_parser parser;
    size_t received; /* request bytes so far, the limit's measure */
    bool complete;   /* the parser saw the end of the request */
    bool url_too_long;
    size_t url_len;
    char url[URL_MAX + 1];
    uv_write_t wr;
    char *head, *body; /* the answer; owned */
    char rbuf[READ_CHUNK];
} http_conn;

const char *gw_http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}

static void maybe_free_server(gw_http *h)
{
    if (h->stopping && !h->listener_open && h->n_conns == 0)
        free(h);
}

static void on_conn_closed(uv_handle_t *handle)
{
    http_conn *c = handle->data;
    if (--c->open_handles > 0)
        return;
    gw_http *h = c->srv;
    gw_list_remove(&c->link);
    h->n_conns--;
    free(c->head);
    free(c->body);
    free(c);
    maybe_free_server(h);
}

static void on_deadline(uv_timer_t *t);

/* The one place a connection changes state. */
static void conn_set_state(http_conn *c, http_state next)
{
    switch (next) {
    case HTTP_WRITING:
        gw_assert(c->state == HTTP_READING);
        uv_read_stop((uv_stream_t *)&c->tcp);
        uv_timer_start(&c->timer, on_deadline, c->srv->limits.write_deadline_ms, 0);
        break;
    case HTTP_CLOSING:
        gw_assert(c->state != HTTP_CLOSING);
        /* A queued write is cancelled; its callback runs before the close callbacks. */
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        uv_close((uv_handle_t *)&c->timer, on_conn_closed);
        break;
    case HTTP_READING: /* only the initial state */
        gw_assert(!"a connection cannot go back to reading");
    }
    c->state = next;
}

static void on_written(uv_write_t *req, int status)
{
    http_conn *c = req->data;
    if (c->state == HTTP_WRITING)
        conn_set_state(c, HTTP_CLOSING);
}

/* Queues the answer, taking ownership of body (malloc'd, may be NULL when body_len is 0), and
 * moves to WRITING; closes on failure. */
static void conn_answer(http_conn *c, int status, const char *content_type, const char *extra,
                        char *body, size_t body_len)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\nCache-Control: no-store\r\n%s\r\n",
                     status, gw_http_reason(status), content_type, body_len, extra);
    gw_assert(n > 0 && (size_t)n < sizeof head);
    c->head = strdup(head);
    c->body = body;
    if (!c->head) {
        conn_set_state(c, HTTP_CLOSING);
        return;
    }
    conn_set_state(c, HTTP_WRITING);
    uv_buf_t b[2] = {uv_buf_init(c->head, (unsigned)n), uv_buf_init(body, (unsigned)body_len)};
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, b, body_len ? 2 : 1, on_written) != 0)
        conn_set_state(c, HTTP_CLOSING);
}

/* An error answer with a one-line text body. */
static void conn_error(http_conn *c, int status, const char *extra)
{
    char *body = NULL;
    int n = asprintf(&body, "%s\n", gw_http_reason(status));
    conn_answer(c, status, "text/plain; charset=utf-8", extra, n > 0 ? body : NULL,
                n > 0 ? (size_t)n : 0);
}

/* The handler's body stream writes here: stdio buffers the small writes, this grows by doubling
 * (open_memstream zero-fills and copies more, which showed in a 1,000-pool scrape). */
typedef struct body_sink {
    char *data;
    size_t len, cap;
} body_sink;

static ssize_t sink_write(void *cookie, const char *buf, size_t n)
{
    body_sink *s = cookie;
    if (n > SIZE_MAX / 2 - s->len)
        return 0;
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 65536;
        while (cap < s->len + n)
            cap *= 2;
        char *d = realloc(s->data, cap);
        if (!d)
            return 0; /* a short write: the stream's error flag, then fclose fails */
        s->data = d;
        s->cap = cap;
    }
    memcpy(s->data + s->len, buf, n);
    s->len += n;
    return (ssize_t)n;
}

static void conn_serve(http_conn *c)
{
    if (c->parser.method != HTTP_GET) {
        conn_error(c, 405, "Allow: GET\r\n");
        return;
    }
    if (c->url_too_long) {
        conn_error(c, 414, "");
        return;
    }
    /* Only origin-form targets; an absolute URL is not ours to follow. */
    c->url[strcspn(c->url, "?#")] = 0;
    if (c->url[0] != '/') {
        conn_error(c, 404, "");
        return;
    }
    body_sink sink = {0};
    gw_http_reply r = {.status = 200, .content_type = "text/plain; charset=utf-8"};
    r.body = fopencookie(&sink, "w", (cookie_io_functions_t){.write = sink_write});
    if (!r.body) {
        conn_error(c, 500, "");
        return;
    }
    __fsetlocking(r.body, FSETLOCKING_BYCALLER); /* one thread: no lock per character */
    c->srv->handler(c->srv->arg, c->url, &r);
    bool failed = fclose(r.body) != 0;
    if (failed || r.status == 404) {
        free(sink.data);
        conn_error(c, failed ? 500 : 404, "");
        return;
    }
    conn_answer(c, r.status, r.content_type, "", sink.data, sink.len);
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    if (c->url_len + len > URL_MAX) {
        c->url_too_long = true;
        return 0;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    c->url[c->url_len] = 0;
    return 0;
}

/* Stops the parser at the end of the first request: anything pipelined after it is ignored. */
static int on_message_complete(http_parser *p)
{
    http_conn *c = p->data;
    c->complete = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_message_complete = on_message_complete,
};

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    http_conn *c = handle->data;
    *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    http_conn *c = s->data;
    if (c->state != HTTP_READING || nread == 0)
        return;
    if (nread < 0) { /* the client left (or reset) before a whole request */
        conn_set_state(c, HTTP_CLOSING);
        return;
    }
    /* Never parse past the limit: a 10 MB header costs one buffer, not 10 MB. */
    size_t room = c->srv->limits.max_request - c->received;
    size_t feed = (size_t)nread < room ? (size_t)nread : room;
    c->received += feed;
    http_parser_execute(&c->parser, &parser_settings, buf->base, feed);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (c->complete)
        conn_serve(c);
    else if (e != HPE_OK)
        conn_error(c, e == HPE_HEADER_OVERFLOW ? 431 : 400, "");
    else if (c->received >= c->srv->limits.max_request)
        conn_error(c, 431, "");
}

static void on_deadline(uv_timer_t *t)
{
    http_conn *c = t->data;
    if (c->state == HTTP_READING)
        conn_error(c, 408, ""); /* the write deadline still bounds a client that does not read */
    else if (c->state == HTTP_WRITING)
        conn_set_state(c, HTTP_CLOSING);
}

static void on_reject_closed(uv_handle_t *handle)
{
    free(handle);
}

/* Over the connection cap: accept (so the listener keeps going), say 503, close. */
static void reject(gw_http *h)
{
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 21\r\nConnection: close\r\n\r\n"
                               "too many connections\n";
    uv_tcp_t *t = malloc(sizeof *t);
    if (!t || uv_tcp_init(h->ctx->loop, t) != 0) {
        free(t);
        gw_warn(h->ctx, "metrics endpoint: out of memory for a connection");
        return;
    }
    uv_unref((uv_handle_t *)t);
    if (uv_accept((uv_stream_t *)&h->listener, (uv_stream_t *)t) == 0) {
        uv_buf_t b = uv_buf_init((char *)busy, sizeof busy - 1);
        uv_try_write((uv_stream_t *)t, &b, 1);
    }
    uv_close((uv_handle_t *)t, on_reject_closed);
}

static void on_connection(uv_stream_t *listener, int status)
{
    gw_http *h = listener->data;
    if (status < 0) {
        gw_warn(h->ctx, "metrics endpoint: accept: %s", uv_strerror(status));
        return;
    }
    http_conn *c = h->n_conns < h->limits.max_conns ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        reject(h);
        return;
    }
    c->srv = h;
    c->state = HTTP_READING;
    uv_tcp_init(h->ctx->loop, &c->tcp);
    uv_timer_init(h->ctx->loop, &c->timer);
    c->open_handles = 2;
    c->tcp.data = c->timer.data = c;
    uv_unref((uv_handle_t *)&c->tcp);
    uv_unref((uv_handle_t *)&c->timer);
    gw_list_push_tail(&h->conns, &c->link);
    h->n_conns++;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_set_state(c, HTTP_CLOSING);
        return;
    }
    uv_timer_start(&c->timer, on_deadline, h->limits.request_deadline_ms, 0);
}

static void on_listener_closed(uv_handle_t *handle)
{
    gw_http *h = handle->data;
    h->listener_open = false;
    maybe_free_server(h);
}

int gw_http_start(gw_ctx *ctx, const char *addr, int port, const gw_http_limits *limits,
                  gw_http_handler handler, void *arg, gw_http **out)
{
    struct sockaddr_storage ss;
    int rc;
    if (strcmp(addr, "*") == 0)
        rc = uv_ip4_addr("0.0.0.0", port, (struct sockaddr_in *)&ss);
    else if (strchr(addr, ':'))
        rc = uv_ip6_addr(addr, port, (struct sockaddr_in6 *)&ss);
    else
        rc = uv_ip4_addr(addr, port, (struct sockaddr_in *)&ss);
    if (rc != 0)
        return rc;
    gw_http *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    *h = (gw_http){.ctx = ctx, .limits = *limits, .handler = handler, .arg = arg};
    gw_list_init(&h->conns);
    rc = uv_tcp_init(ctx->loop, &h->listener);
    if (rc != 0) {
        free(h);
        return rc;
    }
    h->listener.data = h;
    h->listener_open = true;
    uv_unref((uv_handle_t *)&h->listener);
    rc = uv_tcp_bind(&h->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&h->listener, 128, on_connection);
    if (rc != 0) {
        gw_http_stop(h);
        return rc;
    }
    *out = h;
    return 0;
}

void gw_http_stop(gw_http *h)
{
    if (!h || h->stopping)
        return;
    h->stopping = true;
    uv_close((uv_handle_t *)&h->listener, on_listener_closed);
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &h->conns)
    {
        http_conn *c = gw_container_of(it, http_conn, link);
        if (c->state != HTTP_CLOSING)
            conn_set_state(c, HTTP_CLOSING);
    }
}
