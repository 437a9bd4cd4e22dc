/*
 * A fake of mongo_shell.h for driving the MongoDB protocol core without I/O (unit tests and
 * fuzzers). Connections are in-memory: what the core writes to a client is collected in its
 * out buffer, what it writes to a backend goes to a responder the driver chooses, and every
 * outcome is reported back to the core later, from mongo_fake_run, never from inside the call
 * (the shell's contract).
 */
#ifndef SLUICE_TEST_MONGO_FAKE_SHELL_H
#define SLUICE_TEST_MONGO_FAKE_SHELL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drivers/mongo/mongo_core.h"
#include "drivers/mongo/mongo_wire.h"

typedef struct fake_write {
    uint8_t *msg;
    size_t len, cap;
} fake_write;

/* One connection (client or backend): the fake's struct mongo_shell_conn. */
struct mongo_shell_conn {
    struct mongo_shell_front *fs;
    struct mongo_shell_conn *next; /* fs->conns */
    mongo_client *client;
    mongo_backend *backend;
    bool reading, closing, closed; /* closed: reported to the core, which freed its object */
    bool eof;                      /* the peer closed its end (delivered once the input is) */
    fake_write *writes;            /* written by the core, not yet completed */
    size_t n_writes, cap_writes;
    uint8_t *out; /* bytes completed towards it (clients: the replies), up to out_keep */
    size_t out_len, out_cap, out_off;
    uint8_t *in; /* bytes from the peer not yet taken by the core */
    size_t in_len, in_off;
};
typedef struct mongo_shell_conn fake_conn;

/* Called for every whole message written to a backend connection, once the write completed. */
typedef void (*fake_responder)(struct mongo_shell_front *fs, fake_conn *backend, const uint8_t *msg,
                               size_t len);

/* The fake's struct mongo_shell_front: a front of the core and its fake world. */
struct mongo_shell_front {
    mongo_front front;
    gw_bufpool bufs; /* the front's buffers, as the loop's pool gives them */
    uint64_t now;
    cfg_log_level log_level;
    fake_conn *conns;
    char (*targets)[MONGO_HOST_LEN]; /* connects asked for, not yet answered */
    size_t n_targets;
    unsigned n_connects;               /* connects asked for in all */
    bool refuse_connects;              /* answer connects with a failure */
    bool hold_connects;                /* leave connects unanswered */
    fake_responder responder;          /* NULL: backends never answer */
    size_t out_keep;                   /* bytes of client output kept (default 1 MiB) */
    mongo_limits limits;               /* what a backend's handshake reports */
    bool quiet;                        /* no log output at all */
    const struct auth_userlist *users; /* what mongo_shell_users answers (the driver's) */
    uint8_t auth_seed[32];
    bool paused, disabled; /* what mongo_shell_paused / _disabled answer (the console's) */
};
typedef struct mongo_shell_front fake_shell;

void mongo_fake_init(fake_shell *fs);
/* Stops the core, runs until everything is closed and frees it all. */
void mongo_fake_free(fake_shell *fs);
/* Runs pending outcomes (writes, input, closes, connects) until none is left. */
void mongo_fake_run(fake_shell *fs);

fake_conn *mongo_fake_client(fake_shell *fs);
/* Bytes from the client: handed to the core as it reads (by mongo_fake_run). */
void mongo_fake_client_send(fake_conn *c, const void *data, size_t len);
/* The client closes its end. */
void mongo_fake_client_eof(fake_conn *c);
/* Bytes from a backend's server, handed to the core at once (it always reads). */
void mongo_fake_backend_send(fake_conn *b, const void *data, size_t len);

/* A responder answering every request with {ok: 1} (and a cursor for find/aggregate). */
void mongo_fake_answer_ok(fake_shell *fs, fake_conn *b, const uint8_t *msg, size_t len);

/* The first client message in c->out (and its length), consumed; NULL when none. */
const uint8_t *mongo_fake_next_reply(fake_conn *c, size_t *len);
/* Sends doc (destroyed) from client c as an OP_MSG with requestID id, then runs. */
void mongo_fake_send_doc(fake_conn *c, bson_t *doc, int32_t id);
/* The next OP_MSG to c: its header in *h and its body copied into *body (caller destroys).
 * False when there is none (or it is not a well-formed OP_MSG). */
bool mongo_fake_reply_doc(fake_conn *c, mongo_header *h, bson_t *body);

#endif
