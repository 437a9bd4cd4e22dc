/*
 * admin: the console's command parser, its control commands and the paused/disabled state
 * (gateway/admin.h). The SHOW views are in admin_show.c.
 */
#include "gateway/admin.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/admin_int.h"
#include "gateway/ctx.h"

int gw_admin_register(gw_ctx *ctx, const gw_admin_driver *d, void *drv)
{
    gw_admin *a = &ctx->admin;
    if (a->n == GW_ADMIN_DRIVERS_MAX)
        return -ENOSPC;
    a->drv[a->n] = d;
    a->arg[a->n] = drv;
    a->n++;
    return 0;
}

void gw_admin_unregister(gw_ctx *ctx, const gw_admin_driver *d, void *drv)
{
    gw_admin *a = &ctx->admin;
    for (unsigned i = 0; i < a->n; i++) {
        if (a->drv[i] == d && a->arg[i] == drv) {
            a->n--;
            a->drv[i] = a->drv[a->n];
            a->arg[i] = a->arg[a->n];
            return;
        }
    }
}

void gw_admin_free(gw_ctx *ctx)
{
    gw_admin *a = &ctx->admin;
    for (size_t i = 0; i < a->n_holds; i++)
        free(a->holds[i].db);
    free(a->holds);
    gw_admin__snaps_free(a);
    memset(a, 0, sizeof *a);
}

static gw_admin_hold *find_hold(const gw_admin *a, const char *db)
{
    for (size_t i = 0; i < a->n_holds; i++)
        if (strcmp(a->holds[i].db, db) == 0)
            return &a->holds[i];
    return NULL;
}

/* The hold of db, made when missing; NULL when out of memory. */
static gw_admin_hold *get_hold(gw_admin *a, const char *db)
{
    gw_admin_hold *h = find_hold(a, db);
    if (h)
        return h;
    gw_admin_hold *holds = realloc(a->holds, (a->n_holds + 1) * sizeof *holds);
    if (!holds)
        return NULL;
    a->holds = holds;
    h = &holds[a->n_holds];
    h->db = strdup(db);
    if (!h->db)
        return NULL;
    h->paused = h->disabled = false;
    a->n_holds++;
    return h;
}

bool gw_admin_paused(const gw_ctx *ctx, const char *db)
{
    const gw_admin *a = &ctx->admin;
    if (a->paused_all)
        return true;
    const gw_admin_hold *h = a->n_holds ? find_hold(a, db) : NULL;
    return h && h->paused;
}

bool gw_admin_disabled(const gw_ctx *ctx, const char *db)
{
    const gw_admin *a = &ctx->admin;
    const gw_admin_hold *h = a->n_holds ? find_hold(a, db) : NULL;
    return h && h->disabled;
}

/* ---- Parsing ---- */

/* The command split into words: identifiers folded to lower case, "quoted" identifiers and
 * 'string' literals unquoted as SQL does. */
#define MAX_WORDS 6
#define WORD_MAX  256

typedef struct words {
    char w[MAX_WORDS][WORD_MAX];
    bool quoted[MAX_WORDS];
    unsigned n;
} words;

/* 0, or -1 for a syntax error (too many words, a word too long, an unterminated quote, a
 * character that has no place in a console command). */
static int split(const char *s, size_t len, words *out)
{
    size_t i = 0;
    out->n = 0;
    while (i < len) {
        unsigned char ch = (unsigned char)s[i];
        if (isspace(ch)) {
            i++;
            continue;
        }
        if (ch == ';') {
            /* Only whitespace may follow the final semicolon. */
            for (i++; i < len; i++)
                if (!isspace((unsigned char)s[i]))
                    return -1;
            break;
        }
        if (out->n == MAX_WORDS)
            return -1;
        char *w = out->w[out->n];
        size_t n = 0;
        out->quoted[out->n] = false;
        if (ch == '\'' || ch == '"') {
            char q = (char)ch;
            out->quoted[out->n] = true;
            for (i++;; i++) {
                if (i >= len)
                    return -1;
                if (s[i] == q) {
                    if (i + 1 < len && s[i + 1] == q) {
                        i++;
                    } else {
                        i++;
                        break;
                    }
                }
                if (s[i] == 0 || n + 1 >= WORD_MAX)
                    return -1;
                w[n++] = s[i];
            }
        } else if (ch == '=') {
            w[n++] = '=';
            i++;
        } else if (isalnum(ch) || ch == '_' || ch == '.' || ch == '-' || ch == '*') {
            while (i < len && (isalnum((unsigned char)s[i]) || strchr("_.-*", s[i]))) {
                if (n + 1 >= WORD_MAX)
                    return -1;
                w[n++] = (char)tolower((unsigned char)s[i]);
                i++;
            }
        } else {
            return -1;
        }
        w[n] = 0;
        out->n++;
    }
    return 0;
}

static int fail(gw_admin_out *out, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(gw_admin_out *out, const char *sqlstate, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return out->error(out->arg, sqlstate, msg);
}

/* ---- Control commands ---- */

#define EACH_DRIVER(a, i) for (unsigned i = 0; i < (a)->n; i++)

static bool db_known(gw_ctx *ctx, const char *db)
{
    gw_admin *a = &ctx->admin;
    EACH_DRIVER(a, i)
    {
        if (a->drv[i]->has_db && a->drv[i]->has_db(a->arg[i], db))
            return true;
    }
    return false;
}

static uint32_t sum_busy(gw_ctx *ctx, const char *db, bool closing)
{
    gw_admin *a = &ctx->admin;
    uint32_t n = 0;
    EACH_DRIVER(a, i)
    {
        uint32_t (*f)(void *, const char *) = closing ? a->drv[i]->closing : a->drv[i]->busy;
        if (f)
            n += f(a->arg[i], db);
    }
    return n;
}

/* Calls the driver callback `field` (skipped where NULL) of every driver with db. */
#define CALL_ALL(ctx, db, field)                                                                   \
    do {                                                                                           \
        gw_admin *a_ = &(ctx)->admin;                                                              \
        for (unsigned i_ = 0; i_ < a_->n; i_++)                                                    \
            if (a_->drv[i_]->field)                                                                \
                a_->drv[i_]->field(a_->arg[i_], (db));                                             \
    } while (0)

/* The wait of a command that ends once a count reaches 0 (PAUSE, WAIT_CLOSE). */
static void start_wait(gw_admin_wait *wait, int kind, const char *db, const char *tag)
{
    wait->kind = kind;
    snprintf(wait->db, sizeof wait->db, "%s", db ? db : "");
    wait->tag = tag;
}

bool gw_admin_poll(gw_ctx *ctx, gw_admin_wait *wait, gw_admin_out *out)
{
    const char *db = wait->db[0] ? wait->db : NULL;
    if (wait->kind == GW_ADMIN_WAIT_NONE)
        return true;
    if (sum_busy(ctx, db, wait->kind == GW_ADMIN_WAIT_CLOSE) > 0)
        return false;
    wait->kind = GW_ADMIN_WAIT_NONE;
    (void)out->done(out->arg, wait->tag);
    return true;
}

/* PAUSE, RESUME, DISABLE, ENABLE, KILL, RECONNECT, WAIT_CLOSE: db_arg is the optional or
 * required database. */
static int control(gw_ctx *ctx, const words *w, gw_admin_out *out, gw_admin_wait *wait)
{
    gw_admin *a = &ctx->admin;
    const char *cmd = w->w[0];
    const char *db = w->n > 1 ? w->w[1] : NULL;
    bool need_db =
        strcmp(cmd, "disable") == 0 || strcmp(cmd, "enable") == 0 || strcmp(cmd, "kill") == 0;
    if (w->n > 2 || (need_db && !db))
        return fail(out, "42601", "%s takes %s database name", cmd,
                    need_db ? "one" : "at most one");
    if (db && !db_known(ctx, db))
        return fail(out, "3D000", "no such database: %s", db);
    static const char *const tags[] = {"PAUSE", "RESUME",    "DISABLE",   "ENABLE",
                                       "KILL",  "RECONNECT", "WAIT_CLOSE"};
    const char *stag = NULL;
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++)
        if (strcasecmp(tags[i], cmd) == 0)
            stag = tags[i];
    if (strcmp(cmd, "pause") == 0) {
        gw_admin_hold *h = db ? get_hold(a, db) : NULL;
        if (db && !h)
            return fail(out, "53200", "out of memory");
        if (db ? h->paused : a->paused_all)
            return fail(out, "55000", "%s is already paused", db ? db : "everything");
        if (db)
            h->paused = true;
        else
            a->paused_all = true;
        gw_info(ctx, "admin: PAUSE %s", db ? db : "(all)");
        start_wait(wait, GW_ADMIN_WAIT_PAUSE, db, stag);
        return 0;
    }
    if (strcmp(cmd, "resume") == 0) {
        gw_admin_hold *h = db ? find_hold(a, db) : NULL;
        if (db ? !(h && h->paused) : !a->paused_all) {
            /* RESUME of everything also lifts each database's own pause. */
            bool any = false;
            for (size_t i = 0; !db && i < a->n_holds; i++)
                any = any || a->holds[i].paused;
            if (!any)
                return fail(out, "55000", "%s is not paused", db ? db : "nothing");
        }
        if (db) {
            h->paused = false;
        } else {
            a->paused_all = false;
            for (size_t i = 0; i < a->n_holds; i++)
                a->holds[i].paused = false;
        }
        gw_info(ctx, "admin: RESUME %s", db ? db : "(all)");
        CALL_ALL(ctx, db, resume);
        return out->done(out->arg, stag);
    }
    if (strcmp(cmd, "disable") == 0 || strcmp(cmd, "enable") == 0) {
        gw_admin_hold *h = get_hold(a, db);
        if (!h)
            return fail(out, "53200", "out of memory");
        h->disabled = cmd[0] == 'd';
        gw_info(ctx, "admin: %s %s", stag, db);
        if (!h->disabled)
            CALL_ALL(ctx, db, resume);
        return out->done(out->arg, stag);
    }
    if (strcmp(cmd, "kill") == 0) {
        /* As PgBouncer: the database is paused too, so clients do not come straight back. */
        gw_admin_hold *h = get_hold(a, db);
        if (!h)
            return fail(out, "53200", "out of memory");
        h->paused = true;
        gw_info(ctx, "admin: KILL %s", db);
        CALL_ALL(ctx, db, kill);
        return out->done(out->arg, stag);
    }
    if (strcmp(cmd, "reconnect") == 0) {
        gw_info(ctx, "admin: RECONNECT %s", db ? db : "(all)");
        CALL_ALL(ctx, db, reconnect);
        return out->done(out->arg, stag);
    }
    /* wait_close */
    start_wait(wait, GW_ADMIN_WAIT_CLOSE, db, stag);
    return 0;
}

static int kill_client(gw_ctx *ctx, const words *w, gw_admin_out *out)
{
    gw_admin *a = &ctx->admin;
    char *end = NULL;
    unsigned long long id = w->n == 2 ? strtoull(w->w[1], &end, 10) : 0;
    if (w->n != 2 || !end || *end || !isdigit((unsigned char)w->w[1][0]))
        return fail(out, "42601", "KILL_CLIENT takes one client id (SHOW CLIENTS, column id)");
    EACH_DRIVER(a, i)
    {
        if (a->drv[i]->kill_client && a->drv[i]->kill_client(a->arg[i], id)) {
            gw_info(ctx, "admin: KILL_CLIENT %llu", id);
            return out->done(out->arg, "KILL_CLIENT");
        }
    }
    return fail(out, "42704", "no client with id %llu", id);
}

static int shutdown_cmd(gw_ctx *ctx, const words *w, gw_admin_out *out)
{
    gw_shutdown_mode mode = GW_SHUTDOWN_IMMEDIATE;
    if (w->n == 2 && strcmp(w->w[1], "wait_for_clients") == 0)
        mode = GW_SHUTDOWN_WAIT_FOR_CLIENTS;
    else if (w->n == 2 && strcmp(w->w[1], "wait_for_servers") == 0)
        mode = GW_SHUTDOWN_WAIT_FOR_SERVERS;
    else if (w->n != 1)
        return fail(out, "42601", "SHUTDOWN takes nothing, WAIT_FOR_SERVERS or WAIT_FOR_CLIENTS");
    if (!ctx->process)
        return fail(out, "0A000", "SHUTDOWN is not available here");
    gw_info(ctx, "admin: SHUTDOWN%s%s", w->n == 2 ? " " : "", w->n == 2 ? w->w[1] : "");
    /* The tag goes out first: an immediate shutdown may close this console with the rest. */
    int rc = out->done(out->arg, "SHUTDOWN");
    ctx->process->shutdown(ctx, mode);
    return rc;
}

static int reload_cmd(gw_ctx *ctx, const words *w, gw_admin_out *out)
{
    if (w->n != 1)
        return fail(out, "42601", "RELOAD takes no argument");
    if (!ctx->process)
        return fail(out, "0A000", "RELOAD is not available here");
    gw_info(ctx, "admin: RELOAD");
    if (ctx->process->reload(ctx) != 0)
        return fail(out, "F0000", "the configuration was not reloaded (see the log)");
    return out->done(out->arg, "RELOAD");
}

static int set_cmd(gw_ctx *ctx, const words *w, gw_admin_out *out)
{
    /* SET key = value, or SET key TO value (PgBouncer accepts both). */
    if (w->n != 4 || (strcmp(w->w[2], "=") != 0 && strcmp(w->w[2], "to") != 0))
        return fail(out, "42601", "syntax: SET key = value");
    char err[256];
    int rc = cfg_set(ctx->cfg, w->w[1], w->w[3], err, sizeof err);
    if (rc == -ENOENT)
        return fail(out, "42704", "%s", err);
    if (rc == -EPERM)
        return fail(out, "55P02", "%s", err);
    if (rc != 0)
        return fail(out, "22023", "%s", err);
    ctx->cfg_gen++; /* derived settings (pool sizes, modes) refresh from the changed config */
    gw_info(ctx, "admin: SET %s = %s", w->w[1], w->w[3]);
    return out->done(out->arg, "SET");
}

int gw_admin_run(gw_ctx *ctx, const char *sql, size_t len, bool full, gw_admin_out *out,
                 gw_admin_wait *wait)
{
    words w;
    wait->kind = GW_ADMIN_WAIT_NONE;
    if (split(sql, len, &w) != 0 || w.n == 0 || w.quoted[0])
        return fail(out, "42601", "invalid command '%.*s', use SHOW HELP;",
                    (int)(len > 200 ? 200 : len), sql);
    const char *cmd = w.w[0];
    if (strcmp(cmd, "show") == 0)
        return gw_admin__show(ctx, w.n > 1 ? w.w[1] : "", w.n, out);
    static const char *const known[] = {"pause",  "resume",    "disable",    "enable",
                                        "kill",   "reconnect", "wait_close", "kill_client",
                                        "reload", "shutdown",  "set",        "suspend"};
    bool is_known = false;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        is_known = is_known || strcmp(known[i], cmd) == 0;
    if (!is_known)
        return fail(out, "42601", "invalid command '%.*s', use SHOW HELP;",
                    (int)(len > 200 ? 200 : len), sql);
    if (!full)
        return fail(out, "42501", "admin access needed for %s", cmd);
    if (strcmp(cmd, "kill_client") == 0)
        return kill_client(ctx, &w, out);
    if (strcmp(cmd, "reload") == 0)
        return reload_cmd(ctx, &w, out);
    if (strcmp(cmd, "shutdown") == 0)
        return shutdown_cmd(ctx, &w, out);
    if (strcmp(cmd, "set") == 0)
        return set_cmd(ctx, &w, out);
    if (strcmp(cmd, "suspend") == 0)
        return fail(out, "0A000", "SUSPEND is not supported (online restart uses so_reuseport)");
    return control(ctx, &w, out, wait);
}

int gw_admin_describe(gw_ctx *ctx, const char *sql, size_t len, gw_admin_out *out)
{
    words w;
    if (split(sql, len, &w) != 0 || w.n < 2 || strcmp(w.w[0], "show") != 0)
        return 0;
    return gw_admin__show_columns(ctx, w.w[1], out);
}
