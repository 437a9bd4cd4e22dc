/*
 * mongo_worker: libmongoc's blocking work, on a dedicated thread per [mongodb] entry (never on
 * the loop, and not on libuv's shared thread pool). For each new backend connection it selects
 * a server for writes with a single-threaded mongoc_client_t (topology discovery included; it
 * rescans the deployment at most every heartbeatFrequencyMS, when a selection needs it), opens a
 * socket to it, and lets a single-threaded mongoc_client_t run the handshake and the
 * authentication over that socket through a stream of ours. The socket is then handed to the
 * loop, which forwards raw OP_MSG traffic on it without libmongoc. With TLS (the URI's tls=true)
 * the worker makes the TLS handshake itself before libmongoc's, runs libmongoc's through the
 * session, and hands the session over with the socket (mongo_tls.c): one thread uses it at a
 * time, and it changes hands with the job, under the lock.
 *
 * Why not a mongoc_client_pool_t: its background monitors use the streaming (awaitable hello)
 * protocol, which costs a thread and two connections per server for a selection needed only when
 * a backend connection is opened, and spins when a server answers awaitable hellos at once (the
 * MongoDB-wire test server does).
 *
 * Lifetime: the loop and the thread share a mongo_worker (its queue, lock and quit flag), freed
 * by whichever side lets go last; the thread owns its libmongoc objects and destroys them itself.
 * A stop sets quit and returns at once, so the loop never waits for a server selection or a
 * connect (bounded only by server_connect_timeout) to finish. The thread touches the loop only
 * through uv_async_send on f->wake, under the lock and only while the loop still holds the
 * worker: the loop clears w->wake under the lock before it closes the handle.
 *
 * Threads are joinable, and the loop thread joins them: without waiting while it runs (a thread
 * that has ended is reaped at the next start or stop), and with a bounded wait at exit
 * (mongo__workers_join). A thread let go of at shutdown is usually still destroying its
 * libmongoc client when the loop ends; the exit handlers (mongoc_cleanup, OpenSSL's) must not
 * free process-wide state under it.
 */
#define _GNU_SOURCE /* pthread_tryjoin_np, pthread_timedjoin_np */
#include <errno.h>
#include <fcntl.h>
#include <mongoc/mongoc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "drivers/mongo/mongo_int.h"

#define MONGO_HANDSHAKE_STREAM 0x5100 /* our stream type: none of libmongoc's */

/* What the loop and one worker thread share. */
typedef struct mongo_worker {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    mongo_job *jobs, *done; /* guarded by lock */
    bool quit;              /* guarded by lock: the loop has let go; the thread exits */
    int handshake_fd;       /* guarded by lock: the socket being handshaken, or -1 */
    uv_async_t *wake;       /* guarded by lock: NULL once the loop has let go */
    int refs;               /* guarded by lock: 2 while both sides hold it */
    /* fixed at start, owned by the worker */
    char *uri_string;
    int timeout_ms;
} mongo_worker;

/* Every worker thread started and not yet joined. libmongoc and OpenSSL are process-wide state,
 * so this list is the one place process-wide bookkeeping is the honest shape. Only the loop
 * thread (which is also the one that exits) starts, reaps and joins, so it needs no lock. */
typedef struct worker_thread {
    pthread_t id;
    struct worker_thread *next;
} worker_thread;
static worker_thread *threads;

/* Joins the threads that have ended (timeout_ms 0: without waiting for any), or waits up to
 * timeout_ms in all for every one. Returns true when none is left. */
static bool join_threads(int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline); /* pthread_timedjoin_np's clock */
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    for (worker_thread **p = &threads; *p;) {
        worker_thread *t = *p;
        int rc = timeout_ms > 0 ? pthread_timedjoin_np(t->id, NULL, &deadline)
                                : pthread_tryjoin_np(t->id, NULL);
        if (rc == 0) {
            *p = t->next;
            free(t);
        } else {
            p = &t->next;
        }
    }
    return threads == NULL;
}

static void free_jobs(mongo_job *j)
{
    for (mongo_job *next; j; j = next) {
        next = j->next;
        if (j->fd >= 0)
            close(j->fd);
        gw_tls_free(j->tls);
        free(j);
    }
}

/* Drops one side's hold on w (called with w->lock held; unlocks it). */
static void worker_unref_unlock(mongo_worker *w)
{
    bool last = --w->refs == 0;
    pthread_mutex_unlock(&w->lock);
    if (!last)
        return;
    free_jobs(w->jobs);
    free_jobs(w->done);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w->uri_string);
    free(w);
}

/* ---- a mongoc_stream_t over a socket Sluice owns ---- */

/* The connection being handshaken: its socket and, with TLS, its session. Outlives the stream
 * libmongoc makes on it. */
typedef struct handshake_conn {
    int fd;
    bool used;       /* a stream was made on it: libmongoc may not reconnect */
    gw_tls *tls;     /* NULL: plain */
    gw_buf plain;    /* TLS: plaintext received, not yet read by libmongoc */
    gw_bufpool pool; /* this thread's, without spare blocks */
} handshake_conn;

typedef struct fd_stream {
    mongoc_stream_t vtable;
    int fd;
    bool timed_out;
    handshake_conn *conn;
} fd_stream;

static int wait_fd(int fd, short events, int32_t timeout_msec)
{
    struct pollfd p = {fd, events, 0};
    int rc;
    do {
        rc = poll(&p, 1, timeout_msec < 0 ? -1 : timeout_msec);
    } while (rc < 0 && errno == EINTR);
    return rc;
}

/* Sends b's bytes whole (waiting up to tmo for each chunk) and empties b. 0 or -1 (errno). */
static int send_all(handshake_conn *hc, gw_buf *b, int32_t tmo, bool *timed_out)
{
    size_t off = 0;
    int rc = 0;
    while (off < b->len) {
        if (wait_fd(hc->fd, POLLOUT, tmo) <= 0) {
            *timed_out = true;
            errno = ETIMEDOUT;
            rc = -1;
            break;
        }
        ssize_t n = send(hc->fd, b->data + off, b->len - off, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            rc = -1;
            break;
        }
        if (n > 0)
            off += (size_t)n;
    }
    gw_buf_release(b, &hc->pool);
    return rc;
}

/* TLS: reads what arrives within tmo and decrypts it into hc->plain, answering what the
 * session must answer. 1 after progress (perhaps no plaintext yet), 0 at the end of the
 * stream, -1 on an error or a timeout (errno). */
static int tls_fill(handshake_conn *hc, int32_t tmo, bool *timed_out)
{
    if (wait_fd(hc->fd, POLLIN, tmo) <= 0) {
        *timed_out = true;
        errno = tmo == 0 ? EAGAIN : ETIMEDOUT;
        return -1;
    }
    uint8_t buf[GW_BUF_BLOCK];
    ssize_t n = recv(hc->fd, buf, sizeof buf, 0);
    if (n == 0)
        return 0;
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 1 : -1;
    gw_buf wire = {0};
    int rc = gw_tls_unseal(hc->tls, buf, (size_t)n, &hc->plain, &wire, &hc->pool);
    int sent = send_all(hc, &wire, tmo, timed_out);
    if (rc == GW_TLS_EOF)
        return 0;
    if (rc != 0) {
        errno = rc == -ENOMEM ? ENOMEM : EPROTO;
        return -1;
    }
    return sent == 0 ? 1 : -1;
}

static ssize_t tls_writev(fd_stream *s, mongoc_iovec_t *iov, size_t iovcnt, int32_t tmo)
{
    handshake_conn *hc = s->conn;
    gw_buf wire = {0};
    size_t total = 0;
    for (size_t i = 0; i < iovcnt; i++) {
        if (gw_tls_seal(hc->tls, iov[i].iov_base, iov[i].iov_len, &wire, &hc->pool) != 0) {
            gw_buf_release(&wire, &hc->pool);
            errno = EPROTO;
            return -1;
        }
        total += iov[i].iov_len;
    }
    return send_all(hc, &wire, tmo, &s->timed_out) == 0 ? (ssize_t)total : -1;
}

/* As s_readv, from the session's plaintext. */
static ssize_t tls_readv(fd_stream *s, mongoc_iovec_t *iov, size_t iovcnt, size_t min_bytes,
                         int32_t tmo)
{
    handshake_conn *hc = s->conn;
    size_t total = 0, idx = 0, off = 0;
    s->timed_out = false;
    while (idx < iovcnt) {
        if (hc->plain.len == 0) {
            bool enough = total >= min_bytes && total > 0;
            int r = tls_fill(hc, enough ? 0 : tmo, &s->timed_out);
            if (r > 0)
                continue;
            if (enough)
                break;
            if (r == 0)
                return (ssize_t)total;
            return total ? (ssize_t)total : -1;
        }
        size_t n = iov[idx].iov_len - off;
        if (n > hc->plain.len)
            n = hc->plain.len;
        memcpy((char *)iov[idx].iov_base + off, hc->plain.data, n);
        gw_buf_consume(&hc->plain, &hc->pool, n);
        total += n;
        off += n;
        if (off >= iov[idx].iov_len) {
            idx++;
            off = 0;
        }
    }
    s->timed_out = false;
    return (ssize_t)total;
}

static ssize_t s_writev(mongoc_stream_t *st, mongoc_iovec_t *iov, size_t iovcnt, int32_t tmo)
{
    fd_stream *s = (fd_stream *)st;
    if (s->conn->tls)
        return tls_writev(s, iov, iovcnt, tmo);
    size_t total = 0, want = 0;
    for (size_t i = 0; i < iovcnt; i++)
        want += iov[i].iov_len;
    size_t idx = 0, off = 0;
    while (total < want) {
        if (wait_fd(s->fd, POLLOUT, tmo) <= 0) {
            s->timed_out = true;
            errno = ETIMEDOUT;
            return -1;
        }
        struct iovec v = {(char *)iov[idx].iov_base + off, iov[idx].iov_len - off};
        ssize_t n = send(s->fd, v.iov_base, v.iov_len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            return -1;
        }
        total += (size_t)n;
        off += (size_t)n;
        while (idx < iovcnt && off >= iov[idx].iov_len) {
            off -= iov[idx].iov_len;
            idx++;
        }
    }
    return (ssize_t)total;
}

static ssize_t s_readv(mongoc_stream_t *st, mongoc_iovec_t *iov, size_t iovcnt, size_t min_bytes,
                       int32_t tmo)
{
    fd_stream *s = (fd_stream *)st;
    if (s->conn->tls)
        return tls_readv(s, iov, iovcnt, min_bytes, tmo);
    size_t total = 0, idx = 0, off = 0;
    s->timed_out = false;
    while (idx < iovcnt) {
        if (total >= min_bytes && total > 0) {
            /* Enough for the caller; take more only if it is already there. */
            if (wait_fd(s->fd, POLLIN, 0) <= 0)
                break;
        } else if (wait_fd(s->fd, POLLIN, tmo) <= 0) {
            s->timed_out = true;
            errno = tmo == 0 ? EAGAIN : ETIMEDOUT;
            return total ? (ssize_t)total : -1;
        }
        ssize_t n = recv(s->fd, (char *)iov[idx].iov_base + off, iov[idx].iov_len - off, 0);
        if (n == 0)
            return total ? (ssize_t)total : 0;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            return total ? (ssize_t)total : -1;
        }
        total += (size_t)n;
        off += (size_t)n;
        if (off >= iov[idx].iov_len) {
            idx++;
            off = 0;
        }
    }
    return (ssize_t)total;
}

static ssize_t s_poll(mongoc_stream_poll_t *streams, size_t n, int32_t tmo)
{
    struct pollfd p[8];
    if (n > 8)
        n = 8;
    for (size_t i = 0; i < n; i++) {
        p[i].fd = ((fd_stream *)streams[i].stream)->fd;
        p[i].events = (short)streams[i].events;
        p[i].revents = 0;
    }
    int rc = poll(p, n, tmo);
    for (size_t i = 0; i < n; i++)
        streams[i].revents = p[i].revents;
    return rc;
}

/* The socket outlives the stream: libmongoc must not close it. */
static int s_close(mongoc_stream_t *st)
{
    (void)st;
    return 0;
}

static void s_destroy(mongoc_stream_t *st)
{
    free(st);
}

static int s_flush(mongoc_stream_t *st)
{
    (void)st;
    return 0;
}

static int s_setsockopt(mongoc_stream_t *st, int level, int name, void *val, mongoc_socklen_t len)
{
    return setsockopt(((fd_stream *)st)->fd, level, name, val, len);
}

static bool s_check_closed(mongoc_stream_t *st)
{
    if (((fd_stream *)st)->conn->plain.len > 0)
        return false;
    char c;
    ssize_t n = recv(((fd_stream *)st)->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0;
}

static bool s_timed_out(mongoc_stream_t *st)
{
    return ((fd_stream *)st)->timed_out;
}

static bool s_should_retry(mongoc_stream_t *st)
{
    (void)st;
    return errno == EAGAIN || errno == EINTR;
}

static mongoc_stream_t *initiator(const mongoc_uri_t *uri, const mongoc_host_list_t *host,
                                  void *user_data, bson_error_t *error)
{
    (void)uri;
    (void)host;
    handshake_conn *a = user_data;
    if (a->used) {
        bson_set_error(error, MONGOC_ERROR_STREAM, MONGOC_ERROR_STREAM_CONNECT,
                       "the handshake connection was lost");
        return NULL;
    }
    fd_stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    a->used = true;
    s->fd = a->fd;
    s->conn = a;
    s->vtable.type = MONGO_HANDSHAKE_STREAM;
    s->vtable.destroy = s_destroy;
    s->vtable.failed = s_destroy;
    s->vtable.close = s_close;
    s->vtable.flush = s_flush;
    s->vtable.writev = s_writev;
    s->vtable.readv = s_readv;
    s->vtable.setsockopt = s_setsockopt;
    s->vtable.check_closed = s_check_closed;
    s->vtable.poll = s_poll;
    s->vtable.timed_out = s_timed_out;
    s->vtable.should_retry = s_should_retry;
    return (mongoc_stream_t *)s;
}

/* ---- the connect job ---- */

static int connect_socket(const char *host, uint16_t port, int timeout_ms, char *err, size_t n)
{
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(err, n, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
            (errno == EINPROGRESS && wait_fd(fd, POLLOUT, timeout_ms) > 0)) {
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
            if (soerr == 0)
                break;
            errno = soerr;
        }
        snprintf(err, n, "cannot connect to %s:%u: %s", host, port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

static int32_t get_i32(const bson_t *doc, const char *key, int32_t dflt)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it))
        return (int32_t)bson_iter_as_int64(&it);
    return dflt;
}

/* A URI for exactly this server, with the credentials and options of the configured one. */
static mongoc_uri_t *direct_uri(const mongoc_uri_t *base, const char *host, uint16_t port,
                                int timeout_ms)
{
    mongoc_uri_t *u = mongoc_uri_new_for_host_port(host, port);
    if (!u)
        return NULL;
    if (mongoc_uri_get_username(base))
        mongoc_uri_set_username(u, mongoc_uri_get_username(base));
    if (mongoc_uri_get_password(base))
        mongoc_uri_set_password(u, mongoc_uri_get_password(base));
    if (mongoc_uri_get_auth_mechanism(base))
        mongoc_uri_set_auth_mechanism(u, mongoc_uri_get_auth_mechanism(base));
    if (mongoc_uri_get_username(base))
        mongoc_uri_set_auth_source(u, mongoc_uri_get_auth_source(base));
    bson_t props;
    if (mongoc_uri_get_mechanism_properties(base, &props))
        mongoc_uri_set_mechanism_properties(u, &props);
    if (mongoc_uri_get_appname(base))
        mongoc_uri_set_appname(u, mongoc_uri_get_appname(base));
    mongoc_uri_set_option_as_bool(u, MONGOC_URI_DIRECTCONNECTION, true);
    /* The handshake and authentication are bounded by the connect timeout too. */
    mongoc_uri_set_option_as_int32(u, MONGOC_URI_CONNECTTIMEOUTMS, timeout_ms);
    mongoc_uri_set_option_as_int32(u, MONGOC_URI_SOCKETTIMEOUTMS, timeout_ms);
    mongoc_uri_set_option_as_int32(u, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, timeout_ms);
    return u;
}

/* "host:port" or "[v6]:port" into its parts. */
static int split_host(const char *target, char *host, size_t n, uint16_t *port)
{
    const char *colon = strrchr(target, ':');
    if (!colon)
        return -1;
    const char *start = target, *end = colon;
    if (*start == '[' && end > start && end[-1] == ']') {
        start++;
        end--;
    }
    snprintf(host, n, "%.*s", (int)(end - start), start);
    long p = strtol(colon + 1, NULL, 10);
    if (p <= 0 || p > 65535)
        return -1;
    *port = (uint16_t)p;
    return 0;
}

/* The server for job: its target, or the one selected for writes (the primary). */
static int pick_server(mongoc_client_t *selector, mongo_job *job, char *host, size_t n,
                       uint16_t *port)
{
    if (job->target[0]) {
        snprintf(job->host, sizeof job->host, "%s", job->target);
        if (split_host(job->target, host, n, port) == 0)
            return 0;
        snprintf(job->error, sizeof job->error, "bad server address %.128s", job->target);
        return -1;
    }
    bson_error_t err;
    mongoc_server_description_t *sd = mongoc_client_select_server(selector, true, NULL, &err);
    if (!sd) {
        snprintf(job->error, sizeof job->error, "no server selectable for writes: %.200s",
                 err.message);
        return -1;
    }
    const mongoc_host_list_t *h = mongoc_server_description_host(sd);
    snprintf(host, n, "%.127s", h->host);
    *port = h->port;
    snprintf(job->host, sizeof job->host, "%.134s", h->host_and_port);
    mongoc_server_description_destroy(sd);
    return 0;
}

/* Makes hc's TLS session to host and its handshake, within timeout_ms per wait. 0, or -1 with
 * the reason in job->error. */
static int tls_connect(handshake_conn *hc, gw_tls_conf *conf, bool verify_host, const char *host,
                       int timeout_ms, mongo_job *job)
{
    hc->tls = gw_tls_client_new(conf, host, verify_host);
    if (!hc->tls) {
        snprintf(job->error, sizeof job->error, "cannot start TLS with %.100s", job->host);
        return -1;
    }
    bool timed_out = false;
    gw_buf wire = {0};
    int rc = gw_tls_unseal(hc->tls, NULL, 0, &hc->plain, &wire, &hc->pool); /* ClientHello */
    errno = rc == 0 ? 0 : EPROTO;
    if (send_all(hc, &wire, timeout_ms, &timed_out) != 0 && rc == 0)
        rc = -1;
    int r = 1;
    while (rc == 0 && !gw_tls_ready(hc->tls)) {
        r = tls_fill(hc, timeout_ms, &timed_out);
        rc = r > 0 ? 0 : -1;
    }
    if (rc == 0)
        return 0;
    const char *why = timed_out         ? "timed out"
                      : r == 0          ? "the server closed the connection"
                      : errno == EPROTO ? gw_tls_error(hc->tls)
                                        : strerror(errno);
    snprintf(job->error, sizeof job->error, "TLS handshake with %.100s failed: %.120s", job->host,
             why);
    return -1;
}

static void set_handshake_fd(mongo_worker *w, int fd)
{
    pthread_mutex_lock(&w->lock);
    w->handshake_fd = fd;
    if (fd >= 0 && w->quit)
        shutdown(fd, SHUT_RDWR);
    pthread_mutex_unlock(&w->lock);
}

static bool quitting(mongo_worker *w)
{
    pthread_mutex_lock(&w->lock);
    bool q = w->quit;
    pthread_mutex_unlock(&w->lock);
    return q;
}

/* What the worker thread knows of TLS to the servers (from the URI, fixed at its start). */
typedef struct worker_tls {
    gw_tls_conf *conf; /* NULL: plain */
    bool verify_host;
} worker_tls;

static void do_connect(mongo_worker *w, const mongoc_uri_t *uri, mongoc_client_t *selector,
                       int timeout_ms, const worker_tls *wt, mongo_job *job)
{
    bson_error_t err;
    job->fd = -1;
    char host[MONGO_HOST_LEN];
    uint16_t port;
    if (pick_server(selector, job, host, sizeof host, &port) != 0 || quitting(w))
        return;
    int fd = connect_socket(host, port, timeout_ms, job->error, sizeof job->error);
    if (fd < 0)
        return;
    handshake_conn hc = {.fd = fd};
    gw_bufpool_init(&hc.pool, 0);
    set_handshake_fd(w, fd); /* so that shutdown can cut the handshake short */
    if (wt->conf && tls_connect(&hc, wt->conf, wt->verify_host, host, timeout_ms, job) != 0) {
        set_handshake_fd(w, -1);
        gw_tls_free(hc.tls);
        gw_buf_release(&hc.plain, &hc.pool);
        gw_bufpool_destroy(&hc.pool);
        close(fd);
        return;
    }
    mongoc_uri_t *u = direct_uri(uri, host, port, timeout_ms);
    mongoc_client_t *cl = u ? mongoc_client_new_from_uri(u) : NULL;
    bool ok = false;
    bson_t cmd = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    if (!cl) {
        snprintf(job->error, sizeof job->error, "cannot create a handshake client");
    } else {
        mongoc_client_set_error_api(cl, MONGOC_ERROR_API_VERSION_2);
        mongoc_client_set_stream_initiator(cl, initiator, &hc);
        BSON_APPEND_INT32(&cmd, "hello", 1);
        /* The first command makes libmongoc run its handshake and authenticate on our socket
         * (through the TLS session when there is one). */
        bson_destroy(&reply);
        ok = mongoc_client_command_simple(cl, "admin", &cmd, NULL, &reply, &err);
        if (!ok)
            snprintf(job->error, sizeof job->error, "handshake with %.100s failed: %.120s",
                     job->host, err.message);
    }
    set_handshake_fd(w, -1);
    if (ok && hc.plain.len > 0) { /* nothing may follow the answers libmongoc read */
        snprintf(job->error, sizeof job->error, "unexpected bytes from %.100s after its handshake",
                 job->host);
        ok = false;
    }
    gw_buf_release(&hc.plain, &hc.pool);
    gw_bufpool_destroy(&hc.pool);
    if (ok) {
        job->limits.max_bson = get_i32(&reply, "maxBsonObjectSize", 16 * 1024 * 1024);
        job->limits.max_message = get_i32(&reply, "maxMessageSizeBytes", MONGO_DEFAULT_MAX);
        job->limits.max_batch = get_i32(&reply, "maxWriteBatchSize", 100000);
        job->limits.session_timeout_min = get_i32(&reply, "logicalSessionTimeoutMinutes", 30);
        job->limits.min_wire = get_i32(&reply, "minWireVersion", 0);
        job->limits.max_wire = get_i32(&reply, "maxWireVersion", 6);
        job->fd = fd;
        job->tls = hc.tls; /* handed to the loop with the job, under the lock */
    } else {
        gw_tls_free(hc.tls);
        close(fd);
    }
    bson_destroy(&cmd);
    bson_destroy(&reply);
    mongoc_client_destroy(cl);
    mongoc_uri_destroy(u);
}

static void *worker_main(void *arg)
{
    mongo_worker *w = arg;
    bson_error_t err;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(w->uri_string, &err);
    int timeout_ms = w->timeout_ms;
    if (uri) {
        /* Bound the blocking calls: selection and connect give up with the connect timeout. */
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, timeout_ms);
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, timeout_ms);
        /* Wait up to that timeout for a primary (a failover, a restart) instead of failing
         * after one scan; rescan as often as a client pool would. */
        mongoc_uri_set_option_as_bool(uri, MONGOC_URI_SERVERSELECTIONTRYONCE, false);
        if (!mongoc_uri_has_option(uri, MONGOC_URI_HEARTBEATFREQUENCYMS))
            mongoc_uri_set_option_as_int32(uri, MONGOC_URI_HEARTBEATFREQUENCYMS, 10000);
    }
    /* Used on this thread only, so a single-threaded client is safe. */
    mongoc_client_t *selector = uri ? mongoc_client_new_from_uri(uri) : NULL;
    worker_tls wt = {0};
    char tls_err[256] = "";
    if (selector && mongo__uri_tls(uri, &wt.conf, &wt.verify_host, tls_err, sizeof tls_err) != 0) {
        /* Checked with the config; a file changed since: nothing connects in the clear. */
        mongoc_client_destroy(selector);
        selector = NULL;
    }
    if (selector)
        mongoc_client_set_error_api(selector, MONGOC_ERROR_API_VERSION_2);
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (!w->jobs && !w->quit)
            pthread_cond_wait(&w->cond, &w->lock);
        if (w->quit) {
            pthread_mutex_unlock(&w->lock);
            break;
        }
        mongo_job *job = w->jobs;
        w->jobs = job->next;
        pthread_mutex_unlock(&w->lock);

        job->next = NULL;
        if (selector)
            do_connect(w, uri, selector, timeout_ms, &wt, job);
        else if (tls_err[0])
            snprintf(job->error, sizeof job->error, "%.250s", tls_err);
        else
            snprintf(job->error, sizeof job->error, "invalid URI: %.200s", err.message);

        pthread_mutex_lock(&w->lock);
        if (w->quit) { /* nobody collects it any more */
            pthread_mutex_unlock(&w->lock);
            free_jobs(job);
            break;
        }
        job->next = w->done;
        w->done = job;
        uv_async_send(w->wake); /* under the lock: the loop cannot be closing it meanwhile */
        pthread_mutex_unlock(&w->lock);
    }
    mongoc_client_destroy(selector);
    mongoc_uri_destroy(uri);
    gw_tls_conf_release(wt.conf);
    pthread_mutex_lock(&w->lock);
    worker_unref_unlock(w);
    return NULL;
}

/* Loop side: collect finished jobs (uv_async_send coalesces wake-ups, so drain the list). */
static void on_wake(uv_async_t *h)
{
    mongo_shell_front *sf = h->data;
    mongo_worker *w = sf->worker;
    if (!w)
        return; /* let go of already */
    pthread_mutex_lock(&w->lock);
    mongo_job *done = NULL;
    while (w->done) { /* the worker pushes at the head: reverse into completion order */
        mongo_job *j = w->done;
        w->done = j->next;
        j->next = done;
        done = j;
    }
    pthread_mutex_unlock(&w->lock);
    while (done) {
        mongo_job *next = done->next;
        if (done->fd >= 0)
            mongo__io_backend_connected(sf, done);
        else
            mongo_core_connect_failed(&sf->core, done->target, done->error);
        gw_tls_free(done->tls); /* when the loop could not take it */
        free(done);
        done = next;
    }
}

int mongo__worker_start(mongo_shell_front *f)
{
    mongo_worker *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->handshake_fd = -1;
    w->timeout_ms = f->connect_timeout_ms;
    w->uri_string = strdup(f->uri_string);
    if (!w->uri_string) {
        free(w);
        return -ENOMEM;
    }
    join_threads(0); /* those of earlier stops, ended since */
    worker_thread *t = calloc(1, sizeof *t);
    int rc = t ? uv_async_init(f->gw->ctx->loop, &f->wake, on_wake) : -ENOMEM;
    if (rc != 0) {
        free(t);
        free(w->uri_string);
        free(w);
        return rc;
    }
    mongo__front_own_handle(f, (uv_handle_t *)&f->wake);
    f->wake_open = true;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->wake = &f->wake;
    w->refs = 2;
    rc = pthread_create(&t->id, NULL, worker_main, w);
    if (rc != 0) {
        free(t);
        w->refs = 1;
        pthread_mutex_lock(&w->lock);
        worker_unref_unlock(w);
        return -rc; /* the wake handle is closed by the stop, like a started one's */
    }
    t->next = threads;
    threads = t;
    f->worker = w;
    return 0;
}

int mongo__worker_request_connect(mongo_shell_front *f, const char *target)
{
    mongo_worker *w = f->worker;
    if (!w)
        return -ENOENT;
    mongo_job *job = calloc(1, sizeof *job);
    if (!job)
        return -ENOMEM;
    job->fd = -1;
    snprintf(job->target, sizeof job->target, "%s", target ? target : "");
    pthread_mutex_lock(&w->lock);
    mongo_job **tail = &w->jobs; /* FIFO: the oldest need first */
    while (*tail)
        tail = &(*tail)->next;
    *tail = job;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

void mongo__worker_stop(mongo_shell_front *f, uv_close_cb close_cb)
{
    join_threads(0); /* those of earlier stops, ended since */
    mongo_worker *w = f->worker;
    f->worker = NULL;
    if (w) {
        pthread_mutex_lock(&w->lock);
        w->quit = true;
        w->wake = NULL;
        if (w->handshake_fd >= 0)
            shutdown(w->handshake_fd, SHUT_RDWR); /* the handshake fails at once */
        pthread_cond_signal(&w->cond);
        worker_unref_unlock(w); /* queued and finished jobs go with the last reference */
    }
    if (f->wake_open) {
        f->wake_open = false;
        uv_close((uv_handle_t *)&f->wake, close_cb);
    }
}

bool mongo__workers_join(int timeout_ms)
{
    return join_threads(timeout_ms);
}
