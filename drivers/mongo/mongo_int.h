/*
 * mongo_int.h: the MongoDB front end's shell: what its I/O files (mongo_io.c, mongo_worker.c,
 * mongo_gateway.c) share and nothing else. The shell owns the libuv handles, the worker thread
 * and libmongoc, implements mongo_shell.h for the core, and calls the core only through the
 * mongo_core_* entry points (mongo_core.h says how the layers fit).
 */
#ifndef SLUICE_MONGO_INT_H
#define SLUICE_MONGO_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config/cfg.h"
#include "drivers/mongo/mongo_core.h"
#include "gateway/buf.h"
#include "gateway/gw.h"
#include "gateway/transport.h"

struct mongo_gateway;

/* A request for the worker thread, and its answer. */
typedef struct mongo_job {
    struct mongo_job *next;
    char target[MONGO_HOST_LEN]; /* "host:port" to connect to, or "" for the write primary */
    /* answer */
    int fd;      /* connected and authenticated socket, -1 on failure */
    gw_tls *tls; /* its TLS session, handshake done, when the URI asks for TLS; owned */
    char host[MONGO_HOST_LEN];
    mongo_limits limits;
    char error[256];
} mongo_job;

/* The shell's side of one [mongodb] line: its listener and worker around the core's front. */
typedef struct mongo_shell_front {
    mongo_front core;
    struct mongo_gateway *gw;
    char *uri_string;
    char listen_addr[64]; /* the listener's address and port as the line gave them */
    int listen_port;
    uv_tcp_t listener;
    bool listening;
    int open_handles; /* its listener and wake handle not yet closed */
    uint32_t live;    /* its connection handles not yet closed */
    bool retired;     /* a reload removed or replaced its line: it drains, stops, is freed */
    bool stopped;     /* its worker, listener and connections were told to close */
    /* worker thread: shared state in mongo_worker.c, released by whichever side lets go last */
    int connect_timeout_ms;      /* fixed when the thread starts */
    struct mongo_worker *worker; /* NULL when no thread runs (or after the stop) */
    uv_async_t wake;             /* the worker's "jobs are done" signal */
    bool wake_open;
    /* TLS for clients, from the line's client_tls_* keys: NULL when disabled. Rebuilt at
     * reload; a session holds its own reference. */
    gw_tls_conf *client_tls;
    cfg_tls_mode client_tls_mode;
} mongo_shell_front;

/* The shell's side of a client or backend connection: its socket behind a gw_transport (plain,
 * or TLS). Memory released only in the handle's close callback, which first lets the core free
 * its object. */
typedef struct mongo_shell_conn {
    gw_transport t; /* t.h.tcp is the socket; its owner is this connection */
    gw_buf in;      /* the transport's input: TLS plaintext on its way to the core's buffer, or,
                       plain, a view of the core's buffer for one read */
    mongo_shell_front *sf;
    mongo_client *client;   /* learnt from the core's calls; NULL for a backend */
    mongo_backend *backend; /* the same for a backend connection */
    size_t unreported;      /* bytes the core wrote whose end it has not been told yet */
    gw_list written_node;   /* gw->written while a write that completed at once awaits its
                               report (mongo__io_report_written) */
    bool saw_input;         /* a client's first bytes were looked at (a ClientHello or not) */
    char addr[64];          /* the client's "host:port" for the log, "" until first needed */
} mongo_shell_conn;

typedef struct mongo_gateway {
    gw_ctx *ctx;
    mongo_shell_front **fronts; /* owned; retired fronts until they are freed */
    size_t n_fronts;
    unsigned cfg_gen; /* ctx->cfg_gen the fronts' settings were copied at */
    uv_timer_t janitor;
    bool janitor_open;
    int open_handles;
    uint32_t live; /* connection handles not yet closed */
    /* Connections whose writes the socket took at once: the core hears of their end from
     * written_check, after this loop iteration's I/O callbacks (never from inside the write
     * call, and without a uv_write request per message). */
    gw_list written;
    gw_transport_class conn_class; /* every connection's transport (mongo__io_class_init) */
    uv_check_t written_check;
    bool written_check_open; /* initialised and not closing: may be started */
    bool stopping;
    /* A graceful shutdown: listeners closed; clients leave as their commands and transactions
     * end (mongo_core_drain), or with drain_clients only when they choose to. */
    bool draining;
    bool drain_clients;
} mongo_gateway;

/* mongo_gateway.c */
/* Frees the gateway once it is stopping and its last handle and connection are gone. */
void mongo__gateway_maybe_free(mongo_gateway *gw);
/* mongo_stats.c: the entries' stats source and console controls, in ctx from start to stop. */
void mongo__stats_register(mongo_gateway *gw);
void mongo__stats_unregister(mongo_gateway *gw);
/* Re-reads the fronts' settings when the config was reloaded. */
void mongo__refresh_settings(mongo_gateway *gw);
/* Counts h (initialised) as one of sf's handles: closed with the front, h->data = sf. */
void mongo__front_own_handle(mongo_shell_front *sf, uv_handle_t *h);
/* Frees a retired, stopped front once its last handle and connection are gone. */
void mongo__front_maybe_free(mongo_shell_front *sf);

/* mongo_worker.c */
/* Starts sf's worker thread. Returns 0 or a negative errno-style code. */
int mongo__worker_start(mongo_shell_front *sf);
/* Lets go of the worker without waiting for it: a thread in the middle of a server selection or
 * connect finishes it on its own, destroys its libmongoc objects itself and exits. Never blocks.
 * Closes sf->wake afterwards; close_cb is its close callback. */
void mongo__worker_stop(mongo_shell_front *sf, uv_close_cb close_cb);
/* Joins every worker thread, waiting up to timeout_ms in all for those still running. Returns
 * true when none is left; false means one is still inside libmongoc (a server selection or
 * connect only server_connect_timeout ends), and the process must not tear libmongoc or OpenSSL
 * down. Loop thread only. */
bool mongo__workers_join(int timeout_ms);
/* Queues a connect to target ("host:port"), or to the write primary for "". Returns 0 or
 * -ENOMEM. */
int mongo__worker_request_connect(mongo_shell_front *sf, const char *target);

/* mongo_tls.c */
typedef struct _mongoc_uri_t mongoc_uri_t;
/* The TLS context for the servers from uri's tls* options: 0 with *out NULL (no TLS) or a new
 * context (caller releases) and whether host names are verified; -1 with a reason in err for
 * an option Sluice cannot honour or a file that cannot be loaded. */
int mongo__uri_tls(const mongoc_uri_t *uri, gw_tls_conf **out, bool *verify_host, char *err,
                   size_t errlen);

/* mongo_io.c */
/* Sets gw->conn_class up (before the first connection). */
void mongo__io_class_init(mongo_gateway *gw);
/* A client is waiting on sf's listener. */
void mongo__io_accept(mongo_shell_front *sf);
/* The worker connected and handshook job->fd: a backend for the core (or closed). */
void mongo__io_backend_connected(mongo_shell_front *sf, mongo_job *job);
/* gw->written_check's callback: reports the writes that completed at once. */
void mongo__io_report_written(uv_check_t *h);

#endif
