/*
 * mongo_shell.h: the one downward interface of the MongoDB protocol core (mongo_core.h). The
 * core calls these; the shell (mongo_io.c, mongo_gateway.c: libuv, the worker thread and
 * libmongoc) implements them, and tests and fuzzers link a fake instead (link-time
 * substitution, so no indirect call per message).
 *
 * Contract, as libuv's: a function that returns an error never reports the operation later; one
 * that succeeds reports it later through the core's entry points, never from inside the call.
 */
#ifndef SLUICE_MONGO_SHELL_H
#define SLUICE_MONGO_SHELL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/cfg.h"

struct mongo_front;
struct mongo_client;
struct mongo_backend;
struct auth_userlist;

/* Milliseconds of the loop's cached clock. */
uint64_t mongo_shell_now(const struct mongo_front *f);

/* Logs "mongo <front name>: <message>" at level (filtered by the configured log level). */
#ifdef __GNUC__
__attribute__((format(printf, 3, 4)))
#endif
void mongo_shell_log(const struct mongo_front *f, cfg_log_level level, const char *fmt, ...);

/* What a connection line is about: the shell writes it as log_connections,
 * log_disconnections and log_pooler_errors say. */
typedef enum mongo_conn_note {
    MONGO_NOTE_LOGIN, /* the client may send commands: at accept, or after its login to Sluice */
    MONGO_NOTE_END,   /* it is closing (reason: mongo_end_str) */
    MONGO_NOTE_ERROR, /* Sluice answered it with an error of its own (reason: the codeName) */
} mongo_conn_note;
/* Logs text about client c with its context: id (connectionId), the entry's name, the user it
 * logged in as, its address. reason may be NULL. */
void mongo_shell_client_note(struct mongo_client *c, mongo_conn_note what, const char *reason,
                             const char *text);

/* The running config's users (auth_file), or NULL. Valid until the core returns to the shell
 * (a reload replaces them). */
const struct auth_userlist *mongo_shell_users(const struct mongo_front *f);
/* The per-process secret (32 bytes) unknown users' fake SCRAM verifiers derive from. */
const uint8_t *mongo_shell_auth_seed(const struct mongo_front *f);

/* The admin console's holds on f's entry (PAUSE, DISABLE; also PAUSE of everything): a paused
 * entry gives no connection to a request until RESUME (mongo_core_resume); a disabled one
 * closes new clients at accept. */
bool mongo_shell_paused(const struct mongo_front *f);
bool mongo_shell_disabled(const struct mongo_front *f);

/* Text for a negative error a shell call returned. */
const char *mongo_shell_strerror(int err);

/* Writes len bytes of msg (a buffer of cap bytes) to c, in order; takes ownership of msg
 * whatever the result. Returns 0 (mongo_core_client_written reports the end, with msg back
 * or NULL when the shell released it) or a negative error. */
int mongo_shell_client_write(struct mongo_client *c, uint8_t *msg, size_t len, size_t cap);
/* Starts (on) or stops reading c: bytes come through mongo_core_client_read_buf/_read, the end
 * through mongo_core_client_failed. Returns 0 or a negative error. */
int mongo_shell_client_read(struct mongo_client *c, bool on);
/* Closes c's connection: pending writes come back with an error, then
 * mongo_core_client_closed(c). */
void mongo_shell_client_close(struct mongo_client *c);

/* The same for a backend connection; a backend is read from the start until it closes. */
int mongo_shell_backend_write(struct mongo_backend *b, uint8_t *msg, size_t len, size_t cap);
int mongo_shell_backend_read_start(struct mongo_backend *b);
void mongo_shell_backend_close(struct mongo_backend *b);

/* Opens, handshakes and authenticates a new backend connection to target ("host:port"), or to
 * the server selected for writes when target is "". Returns 0 (the result comes through
 * mongo_core_backend_connected or mongo_core_connect_failed) or a negative error. */
int mongo_shell_connect(struct mongo_front *f, const char *target);

#endif
