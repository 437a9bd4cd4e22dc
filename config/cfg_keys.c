/*
 * cfg_keys: the [sluice] key table. Defaults, value parsing, range checks, the Markdown reference
 * and the reload policy all read the same rows, so they cannot drift apart.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/cfg_int.h"

#define OFF(f) offsetof(cfg, f)

const cfg_key cfg__keys[] = {
    {"listen_addr", CFG_T_STR, OFF(listen_addr), "127.0.0.1", CFG_RESTART,
     "Address for PostgreSQL clients; `*` listens on all addresses."},
    {"listen_port", CFG_T_PORT, OFF(listen_port), "6432", CFG_RESTART,
     "TCP port for PostgreSQL clients."},
    {"unix_socket_dir", CFG_T_STR, OFF(unix_socket_dir), "/tmp", CFG_RESTART,
     "Directory of the Unix socket `.s.PGSQL.<listen_port>`; empty disables it."},
    {"metrics_addr", CFG_T_STR, OFF(metrics_addr), "127.0.0.1", CFG_RESTART,
     "Address of the HTTP endpoint for Prometheus (`/metrics`) and probes (`/health`, "
     "`/ready`); `*` listens on every IPv4 address."},
    {"metrics_port", CFG_T_PORT0, OFF(metrics_port), "0", CFG_RESTART,
     "TCP port of that endpoint; 0 turns it off."},
    {"so_reuseport", CFG_T_BOOL, OFF(so_reuseport), "0", CFG_RESTART,
     "Sets SO_REUSEPORT on the TCP listeners (PostgreSQL and `[mongodb]`), so that several "
     "Sluice processes can listen on one port: the way to restart without refusing anyone."},
    {"pool_mode", CFG_T_MODE, OFF(pool_mode), "transaction", CFG_RELOAD,
     "When a server connection goes back to the pool: at client disconnect (`session`) or at "
     "the end of each transaction (`transaction`)."},
    {"default_pool_size", CFG_T_INT, OFF(default_pool_size), "20", CFG_RELOAD,
     "Server connections per (database, user) pool."},
    {"min_pool_size", CFG_T_INT0, OFF(min_pool_size), "0", CFG_RELOAD,
     "Server connections opened and kept per pool even when idle; at most default_pool_size."},
    {"max_client_conn", CFG_T_INT, OFF(max_client_conn), "100", CFG_RELOAD,
     "Client connections allowed at once; more are refused with SQLSTATE 53300."},
    {"max_db_connections", CFG_T_INT0, OFF(max_db_connections), "0", CFG_RELOAD,
     "Server connections per database across all users (PostgreSQL), or per `[mongodb]` line "
     "unless the line sets its own; 0 = unlimited."},
    {"max_user_connections", CFG_T_INT0, OFF(max_user_connections), "0", CFG_RELOAD,
     "Server connections per user across all databases; 0 = unlimited."},
    {"reserve_pool_size", CFG_T_INT0, OFF(reserve_pool_size), "0", CFG_RELOAD,
     "Extra server connections a pool may open when a client has waited longer than "
     "reserve_pool_timeout; they close again once idle and nobody waits. 0 = none."},
    {"reserve_pool_timeout", CFG_T_MS, OFF(reserve_pool_timeout_ms), "5", CFG_RELOAD,
     "How long a client waits for a server before the pool may use its reserve."},
    {"server_reset_query", CFG_T_STR, OFF(server_reset_query), "DISCARD ALL", CFG_RELOAD,
     "Run on a server connection before another client gets it in session mode; empty = none."},
    {"server_reset_query_always", CFG_T_BOOL, OFF(server_reset_query_always), "0", CFG_RELOAD,
     "Run server_reset_query in transaction mode too, after every transaction (for applications "
     "that wrongly rely on session state: they then lose it every time, not at random)."},
    {"server_lifetime", CFG_T_MS, OFF(server_lifetime_ms), "3600", CFG_RELOAD,
     "A server connection older than this is closed when it next goes back to the pool (or "
     "while it sits idle); 0: each serves one client, then closes."},
    {"server_idle_timeout", CFG_T_MS, OFF(server_idle_timeout_ms), "600", CFG_RELOAD,
     "A server connection idle in the pool this long is closed (min_pool_size are kept); "
     "0 = off."},
    {"server_check_delay", CFG_T_MS, OFF(server_check_delay_ms), "30", CFG_RELOAD,
     "A server connection unused for longer is checked with server_check_query before a client "
     "gets it; a failed check closes it and the client gets another. 0: checked every time."},
    {"server_check_query", CFG_T_STR, OFF(server_check_query), "select 1", CFG_RELOAD,
     "The query that checks an idle server connection; empty disables the check."},
    {"server_login_retry", CFG_T_MS, OFF(server_login_retry_ms), "15", CFG_RELOAD,
     "After a server refuses Sluice's credentials (SQLSTATE class 28: wrong password, no hba "
     "entry), no new login to that pool is tried for this long, and clients that need one get "
     "the server's error at once; a client whose own login brings a new credential "
     "(passthrough) ends the wait. Other failures are retried after 0.5 s."},
    {"server_connect_timeout", CFG_T_MS, OFF(server_connect_timeout_ms), "15", CFG_RELOAD,
     "Time allowed to open a server connection, login included."},
    {"query_timeout", CFG_T_MS, OFF(query_timeout_ms), "0", CFG_RELOAD,
     "A query running longer is cancelled on the server (the client gets SQLSTATE 57014 and "
     "keeps its connection); 0 = off."},
    {"query_wait_timeout", CFG_T_MS, OFF(query_wait_timeout_ms), "120", CFG_RELOAD,
     "How long a client may wait for a server connection before it is disconnected; 0 = "
     "forever."},
    {"idle_transaction_timeout", CFG_T_MS, OFF(idle_transaction_timeout_ms), "0", CFG_RELOAD,
     "A client idle inside a transaction this long is rolled back and disconnected (SQLSTATE "
     "25P03); 0 = off."},
    {"client_login_timeout", CFG_T_MS, OFF(client_login_timeout_ms), "60", CFG_RELOAD,
     "Time a new client has to complete its login; 0 = off."},
    {"client_idle_timeout", CFG_T_MS, OFF(client_idle_timeout_ms), "0", CFG_RELOAD,
     "A logged-in client without a server that sends nothing this long is disconnected "
     "(SQLSTATE 08P01, `client_idle_timeout`); 0 = off."},
    {"autodb_idle_timeout", CFG_T_MS, OFF(autodb_idle_timeout_ms), "3600", CFG_RELOAD,
     "A pool made through the `*` [databases] entry is freed when it has had no client for this "
     "long (its idle servers close); 0 = never."},
    {"max_prepared_statements", CFG_T_INT0, OFF(max_prepared_statements), "200", CFG_RELOAD,
     "Protocol-level prepared statements tracked per server connection in transaction mode; "
     "0 turns tracking off."},
    {"max_packet_size", CFG_T_SIZE, OFF(max_packet_size), "2147483647", CFG_RELOAD,
     "Largest client message accepted; a larger one ends the connection (SQLSTATE 08P01)."},
    {"max_buffered_message", CFG_T_SIZE, OFF(max_buffered_message), "16MB", CFG_RELOAD,
     "Largest client message Sluice holds whole to read it (a Query, and Parse, Bind, Describe "
     "and Close in transaction mode); a larger one ends the connection (SQLSTATE 54000). Other "
     "messages (COPY data, large values in session mode) stream through."},
    {"auth_type", CFG_T_AUTH, OFF(auth_type), "trust", CFG_RELOAD,
     "How PostgreSQL clients authenticate: `trust` (anyone), `plain` (cleartext password), `md5` "
     "(md5 challenge; SCRAM for a user whose secret is a SCRAM verifier), `scram-sha-256`, "
     "`cert` (the CN of the client's TLS certificate, verified against client_tls_ca_file, is "
     "the user name), "
     "`hba` (the method of the first matching auth_hba_file line)."},
    {"auth_file", CFG_T_STR, OFF(auth_file), "", CFG_RELOAD,
     "Users file in PgBouncer's format (`\"user\" \"secret\"` per line; the secret is a password, "
     "an md5 hash or a SCRAM-SHA-256 verifier); relative to the config file's directory; "
     "re-read on reload."},
    {"auth_hba_file", CFG_T_STR, OFF(auth_hba_file), "", CFG_RELOAD,
     "pg_hba.conf-style rules for auth_type hba; relative to the config file's directory; "
     "re-read on reload."},
    {"auth_query", CFG_T_STR, OFF(auth_query),
     "SELECT usename, passwd FROM pg_shadow WHERE usename=$1", CFG_RELOAD,
     "Looks up the secret of a user missing from auth_file, run as auth_user; empty disables "
     "the lookup."},
    {"auth_user", CFG_T_STR, OFF(auth_user), "", CFG_RELOAD,
     "The user auth_query runs as; empty: no lookup (unless a database line sets one)."},
    {"auth_dbname", CFG_T_STR, OFF(auth_dbname), "", CFG_RELOAD,
     "The database auth_query runs in; empty: the one the client asked for."},
    {"admin_users", CFG_T_LIST, OFF(admin_users), "", CFG_RELOAD,
     "Comma-separated users allowed to run admin console commands (stored for later use)."},
    {"stats_users", CFG_T_LIST, OFF(stats_users), "", CFG_RELOAD,
     "Comma-separated users allowed read-only admin console commands (stored for later use)."},
    {"auth_plain_without_tls", CFG_T_BOOL, OFF(auth_plain_without_tls), "0", CFG_RELOAD,
     "Whether a TCP client without TLS may send a cleartext password (auth_type plain, hba "
     "`password`); by default only TLS and Unix-socket clients may (others get SQLSTATE 28000)."},
    {"client_tls_sslmode", CFG_T_TLSMODE, OFF(client_tls_sslmode), "disable", CFG_RELOAD,
     "TLS for clients: `disable` (SSLRequest answered `N`), `allow` and `prefer` (TLS when the "
     "client asks), `require` (a TCP client without TLS gets SQLSTATE 28000 before any "
     "password is asked), `verify-ca` and `verify-full` (also a client certificate signed by "
     "client_tls_ca_file). Applies to new connections."},
    {"client_tls_key_file", CFG_T_STR, OFF(client_tls_key_file), "", CFG_RELOAD,
     "Private key (PEM) of the certificate Sluice shows clients; re-read on reload."},
    {"client_tls_cert_file", CFG_T_STR, OFF(client_tls_cert_file), "", CFG_RELOAD,
     "Certificate (PEM, chain allowed) Sluice shows clients; re-read on reload."},
    {"client_tls_ca_file", CFG_T_STR, OFF(client_tls_ca_file), "", CFG_RELOAD,
     "CAs (PEM) that sign client certificates: asked for with verify-ca and verify-full, and "
     "checked when given (auth_type cert)."},
    {"client_tls_protocols", CFG_T_STR, OFF(client_tls_protocols), "secure", CFG_RELOAD,
     "TLS versions for clients: `secure` (tlsv1.2 and tlsv1.3), `all`, `legacy`, or a list of "
     "tlsv1.0, tlsv1.1, tlsv1.2, tlsv1.3 (the range they span)."},
    {"client_tls_ciphers", CFG_T_STR, OFF(client_tls_ciphers), "default", CFG_RELOAD,
     "TLS 1.2 cipher list in OpenSSL's syntax; `default` and `secure`: AEAD ciphers with "
     "forward secrecy; `compat`, `legacy`: `HIGH:!aNULL`. TLS 1.3 suites are OpenSSL's."},
    {"client_tls_ecdhcurve", CFG_T_STR, OFF(client_tls_ecdhcurve), "auto", CFG_RELOAD,
     "Elliptic-curve groups for the key exchange, OpenSSL's list syntax; `auto`: OpenSSL's "
     "defaults."},
    {"client_tls_dheparams", CFG_T_STR, OFF(client_tls_dheparams), "auto", CFG_RELOAD,
     "Finite-field DHE key exchange for TLS 1.2: `none`, or `auto` / `legacy` (OpenSSL's "
     "built-in groups sized to the certificate)."},
    {"server_tls_sslmode", CFG_T_TLSMODE, OFF(server_tls_sslmode), "prefer", CFG_RELOAD,
     "TLS to PostgreSQL servers, libpq's sslmode for every [databases] line that sets none: "
     "`disable`, `allow`, `prefer` (TLS when the server offers it), `require`, `verify-ca` "
     "(and the server's certificate signed by server_tls_ca_file), `verify-full` (and its "
     "name matching the line's host). A server that cannot do what the mode asks is an error, "
     "never a silent cleartext connection. Applies to new server connections."},
    {"server_tls_ca_file", CFG_T_STR, OFF(server_tls_ca_file), "", CFG_RELOAD,
     "CAs (PEM) that sign servers' certificates (libpq's sslrootcert); empty: libpq's default "
     "(~/.postgresql/root.crt)."},
    {"server_tls_key_file", CFG_T_STR, OFF(server_tls_key_file), "", CFG_RELOAD,
     "Private key (PEM) of the certificate Sluice shows servers (libpq's sslkey)."},
    {"server_tls_cert_file", CFG_T_STR, OFF(server_tls_cert_file), "", CFG_RELOAD,
     "Certificate (PEM) Sluice shows servers that ask for one (libpq's sslcert)."},
    {"server_tls_protocols", CFG_T_STR, OFF(server_tls_protocols), "secure", CFG_RELOAD,
     "TLS versions to servers, as client_tls_protocols (libpq's ssl_min_protocol_version and "
     "ssl_max_protocol_version; Sluice's own login uses the same range)."},
    {"server_tls_ciphers", CFG_T_STR, OFF(server_tls_ciphers), "default", CFG_RELOAD,
     "TLS 1.2 cipher list to servers, as client_tls_ciphers. Offered as such by Sluice's own "
     "login (md5/SCRAM passthrough); libpq cannot be told which ciphers to offer, so for its "
     "connections this is a check after the handshake: a server connection whose TLS 1.2 cipher "
     "is not in the list is closed with an error. TLS 1.3 suites are OpenSSL's."},
    {"shutdown_timeout", CFG_T_MS, OFF(shutdown_timeout_ms), "60", CFG_RELOAD,
     "How long SIGTERM (and SHUTDOWN WAIT_FOR_SERVERS / WAIT_FOR_CLIENTS) waits for "
     "transactions or clients to finish before closing what is left; 0 = no limit."},
    {"log_level", CFG_T_LOG, OFF(log_level), "info", CFG_RELOAD,
     "`error`, `warning`, `info` or `debug`."},
    {"stats_period", CFG_T_MS, OFF(stats_period_ms), "60", CFG_RELOAD,
     "How often a statistics line per database is logged, and the period over which SHOW STATS "
     "averages are computed."},
    {"log_format", CFG_T_LOGFMT, OFF(log_format), "text", CFG_RELOAD,
     "`text` (time, level, then the connection's context and the message) or `json` (one "
     "object per line: time, level, message, and client_id, server_id, database, user, address "
     "and protocol when the line is about a connection)."},
    {"logfile", CFG_T_STR, OFF(logfile), "", CFG_RELOAD,
     "File the log is appended to besides stderr; relative to the config file's directory; empty "
     "= none. Reopened at each reload (SIGHUP) and when it was renamed or removed (log rotation "
     "needs no copytruncate)."},
    {"syslog", CFG_T_BOOL, OFF(use_syslog), "0", CFG_RELOAD,
     "Also send each line to the local syslog (`/dev/log`); lines the syslog daemon cannot take "
     "at once are dropped and counted, never waited for."},
    {"syslog_ident", CFG_T_STR, OFF(syslog_ident), "sluice", CFG_RELOAD,
     "The program name syslog lines carry."},
    {"syslog_facility", CFG_T_FACILITY, OFF(syslog_facility), "daemon", CFG_RELOAD,
     "The syslog facility: `auth`, `authpriv`, `daemon`, `user` or `local0` to `local7`."},
    {"log_connections", CFG_T_BOOL, OFF(log_connections), "1", CFG_RELOAD,
     "Log each client login (PostgreSQL and MongoDB)."},
    {"log_disconnections", CFG_T_BOOL, OFF(log_disconnections), "1", CFG_RELOAD,
     "Log each client disconnection with its reason (the drivers' end-reason names)."},
    {"log_pooler_errors", CFG_T_BOOL, OFF(log_pooler_errors), "1", CFG_RELOAD,
     "Log the error messages Sluice itself sends to clients."},
    {NULL, 0, 0, NULL, 0, NULL},
};

_Static_assert(sizeof cfg__keys / sizeof cfg__keys[0] <= CFG__MAX_KEYS + 1,
               "cfg__loader.key_line is too small for the key table");

static const char *const log_names[] = {"error", "warning", "info", "debug", NULL};

/* In cfg_auth_type order. */
static const char *const auth_names[] = {"trust", "plain", "md5", "scram-sha-256",
                                         "cert",  "hba",   NULL};
/* PgBouncer's other methods, so a config written for it gets "not supported", not "unknown". */
static const char *const pgbouncer_auth[] = {"any", "pam", "ldap", "peer", NULL};

/* In cfg_tls_mode order. */
static const char *const tls_mode_names[] = {"disable",   "allow",       "prefer", "require",
                                             "verify-ca", "verify-full", NULL};

int cfg__parse_tls_mode(const char *v, cfg_tls_mode *out)
{
    for (int i = 0; tls_mode_names[i]; i++)
        if (strcmp(v, tls_mode_names[i]) == 0) {
            *out = (cfg_tls_mode)i;
            return 0;
        }
    return -1;
}

const char *cfg_tls_mode_name(cfg_tls_mode m)
{
    return (size_t)m < sizeof tls_mode_names / sizeof tls_mode_names[0] - 1 ? tls_mode_names[m]
                                                                            : "?";
}

static const char *const log_format_names[] = {"text", "json", NULL};

/* In cfg_syslog_facility order: PgBouncer's names. */
static const char *const facility_names[] = {"auth",   "authpriv", "daemon", "user",   "local0",
                                             "local1", "local2",   "local3", "local4", "local5",
                                             "local6", "local7",   NULL};

static const char *const bool_names[] = {"0", "off", "no", "false", "1", "on", "yes", "true", NULL};

const char *cfg_auth_type_name(cfg_auth_type t)
{
    return (size_t)t < sizeof auth_names / sizeof auth_names[0] - 1 ? auth_names[t] : "?";
}

const cfg_key *cfg__key(const char *name)
{
    for (const cfg_key *k = cfg__keys; k->name; k++)
        if (strcmp(k->name, name) == 0)
            return k;
    return NULL;
}

static int set_auth(cfg__loader *l, const cfg_key *k, const char *v, int line, void *field)
{
    for (size_t i = 0; auth_names[i]; i++)
        if (strcmp(v, auth_names[i]) == 0) {
            *(cfg_auth_type *)field = (cfg_auth_type)i;
            return 0;
        }
    for (size_t i = 0; pgbouncer_auth[i]; i++)
        if (strcmp(v, pgbouncer_auth[i]) == 0) {
            cfg__error(l, line, "%s: '%s' is not supported", k->name, v);
            return -1;
        }
    cfg__error(l, line, "%s: expected trust, plain, md5, scram-sha-256, cert or hba, got '%s'",
               k->name, v);
    return -1;
}

/* An enum key whose values are names[0], names[1], ...: the error lists them all. */
static int set_named(cfg__loader *l, const cfg_key *k, const char *v, int line,
                     const char *const *names, void *field)
{
    size_t n = 0;
    for (; names[n]; n++)
        if (strcmp(v, names[n]) == 0) {
            *(int *)field = (int)n;
            return 0;
        }
    char expected[256] = "";
    size_t len = 0;
    for (size_t i = 0; i < n && len < sizeof expected; i++)
        len += (size_t)snprintf(expected + len, sizeof expected - len, "%s%s",
                                i == 0       ? ""
                                : i + 1 == n ? " or "
                                             : ", ",
                                names[i]);
    cfg__error(l, line, "%s: expected %s, got '%s'", k->name, expected, v);
    return -1;
}

int cfg__set_key(cfg__loader *l, const cfg_key *k, const char *v, int line)
{
    void *field = (char *)l->c + k->offset;
    long n;
    uint64_t u;
    cfg_pool_mode mode;
    switch (k->type) {
    case CFG_T_STR: {
        char *s = strdup(v);
        if (!s) {
            cfg__error(l, line, "out of memory");
            return -1;
        }
        free(*(char **)field);
        *(char **)field = s;
        return 0;
    }
    case CFG_T_INT:
    case CFG_T_INT0: {
        long min = k->type == CFG_T_INT ? 1 : 0;
        if (cfg__parse_int(v, CFG__INT_MAX, &n) != 0 || n < min) {
            cfg__error(l, line, "%s: expected a whole number from %ld to %d, got '%s'", k->name,
                       min, CFG__INT_MAX, v);
            return -1;
        }
        *(int *)field = (int)n;
        return 0;
    }
    case CFG_T_PORT:
    case CFG_T_PORT0: {
        long min = k->type == CFG_T_PORT ? 1 : 0;
        if (cfg__parse_int(v, 65535, &n) != 0 || n < min) {
            cfg__error(l, line, "%s: expected a port number from %ld to 65535, got '%s'", k->name,
                       min, v);
            return -1;
        }
        *(int *)field = (int)n;
        return 0;
    }
    case CFG_T_MS:
        if (cfg__parse_duration_ms(v, &u) != 0) {
            cfg__error(l, line,
                       "%s: expected seconds (e.g. 15, 0.5) or a number with ms, s, min or h, "
                       "got '%s'",
                       k->name, v);
            return -1;
        }
        *(uint64_t *)field = u;
        return 0;
    case CFG_T_SIZE:
        if (cfg__parse_size(v, &u) != 0 || u < 1024 || u > INT32_MAX) {
            cfg__error(l, line,
                       "%s: expected a size from 1024 to 2147483647 bytes (kB, MB, GB allowed), "
                       "got '%s'",
                       k->name, v);
            return -1;
        }
        *(uint32_t *)field = (uint32_t)u;
        return 0;
    case CFG_T_MODE:
        if (cfg__parse_pool_mode(v, &mode) != 0) {
            cfg__error(l, line, "%s: expected session or transaction, got '%s'", k->name, v);
            return -1;
        }
        *(cfg_pool_mode *)field = mode;
        return 0;
    case CFG_T_AUTH:
        return set_auth(l, k, v, line, field);
    case CFG_T_LIST: {
        cfg_names names;
        if (cfg__parse_names(v, &names) != 0) {
            cfg__error(l, line, "out of memory");
            return -1;
        }
        cfg__free_names(field);
        *(cfg_names *)field = names;
        return 0;
    }
    case CFG_T_BOOL:
        for (int i = 0; bool_names[i]; i++)
            if (strcmp(v, bool_names[i]) == 0) {
                *(bool *)field = i >= 4;
                return 0;
            }
        cfg__error(l, line, "%s: expected 0 or 1 (off/on, no/yes, false/true), got '%s'", k->name,
                   v);
        return -1;
    case CFG_T_TLSMODE:
        if (cfg__parse_tls_mode(v, (cfg_tls_mode *)field) == 0)
            return 0;
        cfg__error(l, line,
                   "%s: expected disable, allow, prefer, require, verify-ca or verify-full, "
                   "got '%s'",
                   k->name, v);
        return -1;
    case CFG_T_LOG:
        return set_named(l, k, v, line, log_names, field);
    case CFG_T_LOGFMT:
        return set_named(l, k, v, line, log_format_names, field);
    case CFG_T_FACILITY:
        return set_named(l, k, v, line, facility_names, field);
    }
    abort(); /* a row with a type this switch does not know */
}

int cfg__set_defaults(cfg *c)
{
    /* Defaults go through the same parser as the file, so a bad default fails every test. */
    cfg__loader l = {.c = c, .name = "(defaults)"};
    for (const cfg_key *k = cfg__keys; k->name; k++)
        if (cfg__set_key(&l, k, k->def, 0) != 0)
            return -1;
    return 0;
}

const char *cfg__type_unit(cfg_type t)
{
    switch (t) {
    case CFG_T_STR:
        return "string";
    case CFG_T_INT:
        return "integer ≥ 1";
    case CFG_T_INT0:
        return "integer ≥ 0";
    case CFG_T_PORT:
        return "port 1–65535";
    case CFG_T_PORT0:
        return "port 0–65535";
    case CFG_T_MS:
        return "seconds";
    case CFG_T_SIZE:
        return "bytes";
    case CFG_T_MODE:
        return "session \\| transaction";
    case CFG_T_AUTH:
        return "trust \\| plain \\| md5 \\| scram-sha-256 \\| cert \\| hba";
    case CFG_T_LIST:
        return "list of names";
    case CFG_T_BOOL:
        return "0 \\| 1";
    case CFG_T_LOG:
        return "error \\| warning \\| info \\| debug";
    case CFG_T_TLSMODE:
        return "disable \\| allow \\| prefer \\| require \\| verify-ca \\| verify-full";
    case CFG_T_LOGFMT:
        return "text \\| json";
    case CFG_T_FACILITY:
        return "syslog facility";
    }
    return "?";
}

void cfg_write_reference(FILE *out)
{
    fputs("| key | type / unit | default | on reload | meaning |\n", out);
    fputs("|---|---|---|---|---|\n", out);
    for (const cfg_key *k = cfg__keys; k->name; k++)
        fprintf(out, "| `%s` | %s | %s%s%s | %s | %s |\n", k->name, cfg__type_unit(k->type),
                *k->def ? "`" : "", *k->def ? k->def : "(empty)", *k->def ? "`" : "",
                k->reload == CFG_RELOAD ? "applied" : "needs restart", k->doc);
}

/* The bytes a key of type t occupies in struct cfg. */
static size_t field_size(cfg_type t)
{
    switch (t) {
    case CFG_T_STR:
        return sizeof(char *);
    case CFG_T_MS:
        return sizeof(uint64_t);
    case CFG_T_SIZE:
        return sizeof(uint32_t);
    case CFG_T_MODE:
        return sizeof(cfg_pool_mode);
    case CFG_T_AUTH:
        return sizeof(cfg_auth_type);
    case CFG_T_LOG:
        return sizeof(cfg_log_level);
    case CFG_T_TLSMODE:
        return sizeof(cfg_tls_mode);
    case CFG_T_LOGFMT:
        return sizeof(cfg_log_format);
    case CFG_T_FACILITY:
        return sizeof(cfg_syslog_facility);
    case CFG_T_BOOL:
        return sizeof(bool);
    case CFG_T_LIST:
        return sizeof(cfg_names);
    case CFG_T_INT:
    case CFG_T_INT0:
    case CFG_T_PORT:
    case CFG_T_PORT0:
        return sizeof(int);
    }
    abort();
}

static bool same_value(const cfg_key *k, const cfg *a, const cfg *b)
{
    const char *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
    if (k->type == CFG_T_STR)
        return strcmp(*(char *const *)fa, *(char *const *)fb) == 0;
    if (k->type == CFG_T_LIST) {
        const cfg_names *na = (const cfg_names *)fa, *nb = (const cfg_names *)fb;
        if (na->n != nb->n)
            return false;
        for (size_t i = 0; i < na->n; i++)
            if (strcmp(na->names[i], nb->names[i]) != 0)
                return false;
        return true;
    }
    /* Scalars: bool and the enums are written only through cfg__set_key, so equal values have
     * equal bytes. */
    return memcmp(fa, fb, field_size(k->type)) == 0;
}

void cfg_keep_restart_keys(cfg *next, cfg *old)
{
    for (const cfg_key *k = cfg__keys; k->name; k++) {
        if (k->reload != CFG_RESTART || same_value(k, old, next))
            continue;
        /* Exchanged, not copied: each cfg keeps owning exactly one of the two strings. */
        char tmp[sizeof(cfg_names)];
        size_t n = field_size(k->type);
        char *a = (char *)next + k->offset, *b = (char *)old + k->offset;
        memcpy(tmp, a, n);
        memcpy(a, b, n);
        memcpy(b, tmp, n);
    }
}

size_t cfg_restart_keys(const cfg *old, const cfg *next, const char **names, size_t max)
{
    size_t n = 0;
    for (const cfg_key *k = cfg__keys; k->name; k++) {
        if (k->reload != CFG_RESTART || same_value(k, old, next))
            continue;
        if (n < max)
            names[n] = k->name;
        n++;
    }
    return n;
}

/* Keys SET refuses although a reload applies them: their values are checked against files
 * (auth_file, certificates) that only a reload loads. */
static bool set_needs_reload(const cfg_key *k)
{
    return strncmp(k->name, "auth_", 5) == 0 || strncmp(k->name, "client_tls_", 11) == 0;
}

static void show_value(const cfg_key *k, const cfg *c, char *out, size_t cap)
{
    const void *field = (const char *)c + k->offset;
    switch (k->type) {
    case CFG_T_STR:
        snprintf(out, cap, "%s", *(char *const *)field ? *(char *const *)field : "");
        return;
    case CFG_T_INT:
    case CFG_T_INT0:
    case CFG_T_PORT:
    case CFG_T_PORT0:
        snprintf(out, cap, "%d", *(const int *)field);
        return;
    case CFG_T_MS: {
        uint64_t ms = *(const uint64_t *)field;
        if (ms % 1000 == 0)
            snprintf(out, cap, "%llu", (unsigned long long)(ms / 1000));
        else
            snprintf(out, cap, "%llums", (unsigned long long)ms);
        return;
    }
    case CFG_T_SIZE:
        snprintf(out, cap, "%u", *(const uint32_t *)field);
        return;
    case CFG_T_MODE:
        snprintf(out, cap, "%s", cfg_pool_mode_name(*(const cfg_pool_mode *)field));
        return;
    case CFG_T_AUTH:
        snprintf(out, cap, "%s", cfg_auth_type_name(*(const cfg_auth_type *)field));
        return;
    case CFG_T_LIST: {
        const cfg_names *l = field;
        size_t used = 0;
        out[0] = 0;
        for (size_t i = 0; i < l->n && used < cap; i++) {
            int n = snprintf(out + used, cap - used, "%s%s", i ? "," : "", l->names[i]);
            if (n < 0)
                break;
            used += (size_t)n;
        }
        return;
    }
    case CFG_T_BOOL:
        snprintf(out, cap, "%d", *(const bool *)field ? 1 : 0);
        return;
    case CFG_T_LOG:
        snprintf(out, cap, "%s", log_names[*(const cfg_log_level *)field]);
        return;
    case CFG_T_TLSMODE:
        snprintf(out, cap, "%s", cfg_tls_mode_name(*(const cfg_tls_mode *)field));
        return;
    case CFG_T_LOGFMT:
        snprintf(out, cap, "%s", log_format_names[*(const cfg_log_format *)field]);
        return;
    case CFG_T_FACILITY:
        snprintf(out, cap, "%s", facility_names[*(const cfg_syslog_facility *)field]);
        return;
    }
    out[0] = 0;
}

int cfg_key_show(const cfg *c, size_t i, const char **name, char *value, size_t cap,
                 const char **def, bool *changeable)
{
    for (size_t j = 0; j < i; j++)
        if (!cfg__keys[j].name)
            return -1;
    const cfg_key *k = &cfg__keys[i];
    if (!k->name)
        return -1;
    *name = k->name;
    *def = k->def;
    *changeable = k->reload == CFG_RELOAD && !set_needs_reload(k);
    show_value(k, c, value, cap);
    return 0;
}

int cfg_set(cfg *c, const char *name, const char *value, char *err, size_t cap)
{
    const cfg_key *k = cfg__key(name);
    if (!k) {
        snprintf(err, cap, "unknown config parameter: %s", name);
        return -ENOENT;
    }
    if (k->reload != CFG_RESTART && !set_needs_reload(k)) {
        char *text = NULL;
        size_t len = 0;
        FILE *diag = open_memstream(&text, &len);
        cfg__loader l = {.c = c, .name = "SET", .diag = diag};
        int rc = cfg__set_key(&l, k, value, 0);
        if (diag)
            fclose(diag);
        if (rc != 0) {
            /* "SET:0: key: expected ..." without its place. */
            const char *msg = text ? strstr(text, ": ") : NULL;
            snprintf(err, cap, "%s", msg ? msg + 2 : "invalid value");
            size_t n = strlen(err);
            while (n > 0 && err[n - 1] == '\n')
                err[--n] = 0;
        }
        free(text);
        return rc != 0 ? -EINVAL : 0;
    }
    snprintf(err, cap, "%s cannot be changed with SET: %s", name,
             k->reload == CFG_RESTART ? "it needs a restart" : "use RELOAD after editing the file");
    return -EPERM;
}
