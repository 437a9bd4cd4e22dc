/* sluice: entry point. Loads the config, starts the front ends on one libuv loop, handles signals.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "auth/auth.h"
#include "config/cfg.h"
#include "drivers/mongo/mongo.h"
#include "drivers/mongo/mongo_ready.h"
#include "drivers/pg/pg.h"
#include "drivers/pg/pg_ready.h"
#include "gateway/gw.h"
#include "gateway/metrics.h"
#include "gateway/tls_cfg.h"
#include "gateway/htable.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice --config FILE         run the gateway\n"
            "       sluice --check FILE          validate FILE and exit (non-zero on errors)\n"
            "       sluice --make-verifier USER  read USER's password (terminal or stdin) and\n"
            "                                    print a SCRAM-SHA-256 line for auth_file\n"
            "options: -c, --config FILE   -k, --check FILE   -m, --make-verifier USER\n"
            "         -h, --help   -V, --version\n");
}

/* The pooler holds two descriptors per active client; lift the soft limit to the hard one. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* One line from f without its line end, into *line (caller wipes and frees). -1 at EOF. */
static int read_secret_line(FILE *f, char **line)
{
    size_t cap = 0;
    ssize_t n = getline(line, &cap, f);
    if (n < 0)
        return -1;
    while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r'))
        (*line)[--n] = 0;
    return 0;
}

static void wipe(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

/* The password, from the terminal without echo (asked twice), or the first line of stdin when
 * it is not a terminal (for scripts). NULL on EOF or a mismatch (reported). */
static char *read_password(const char *user)
{
    if (!isatty(STDIN_FILENO)) {
        char *pw = NULL;
        if (read_secret_line(stdin, &pw) != 0) {
            free(pw);
            return NULL;
        }
        return pw;
    }
    struct termios old, quiet;
    if (tcgetattr(STDIN_FILENO, &old) != 0)
        return NULL;
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    quiet.c_lflag |= ECHONL;
    char *pw = NULL, *again = NULL;
    fprintf(stderr, "Password for %s: ", user);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    int rc = read_secret_line(stdin, &pw);
    if (rc == 0) {
        fprintf(stderr, "Again: ");
        rc = read_secret_line(stdin, &again);
    }
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    if (rc == 0 && strcmp(pw, again) != 0) {
        fprintf(stderr, "sluice: the passwords differ\n");
        rc = -1;
    }
    wipe(again);
    if (rc != 0) {
        wipe(pw);
        return NULL;
    }
    return pw;
}

/* --make-verifier: prints `"user" "SCRAM-SHA-256$..."`, a users-file line (a quote inside the
 * name is doubled, as the file format wants). */
static int make_verifier(const char *user)
{
    char *pw = read_password(user);
    if (!pw || !*pw) {
        fprintf(stderr, "sluice: no password given\n");
        wipe(pw);
        return 1;
    }
    char *v = NULL;
    int rc = auth_scram_make_verifier(pw, 0, &v);
    wipe(pw);
    if (rc != 0) {
        fprintf(stderr, "sluice: could not make a verifier: %s\n", strerror(-rc));
        return 1;
    }
    putchar('"');
    for (const char *p = user; *p; p++) {
        if (*p == '"')
            putchar('"');
        putchar(*p);
    }
    printf("\" \"%s\"\n", v);
    free(v);
    return fflush(stdout) == 0 ? 0 : 1;
}

static void on_signal_closed(uv_handle_t *h)
{
    (void)h;
}

/* The process's loop context and the signal handles main owns. */
typedef struct gw_process {
    gw_ctx ctx;
    uv_signal_t sig_int, sig_term, sig_hup;
    gw_metrics *metrics; /* NULL when metrics_port is 0 */
} gw_process;

static void begin_shutdown(gw_process *pr)
{
    gw_ctx *ctx = &pr->ctx;
    if (ctx->stopping)
        return;
    ctx->stopping = true;
    gw_info(ctx, "shutting down");
    pg_gateway_stop(ctx);
    mongo_gateway_stop(ctx);
    uv_close((uv_handle_t *)&pr->sig_int, on_signal_closed);
    uv_close((uv_handle_t *)&pr->sig_term, on_signal_closed);
    uv_close((uv_handle_t *)&pr->sig_hup, on_signal_closed);
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    begin_shutdown(h->data);
}

/* The process gw_ctx belongs to (ctx is gw_process's first member). */
static gw_process *process_of(gw_ctx *ctx)
{
    return (gw_process *)ctx;
}

static void process_shutdown(gw_ctx *ctx, gw_shutdown_mode mode)
{
    (void)mode; /* every mode drains the same way for now */
    begin_shutdown(process_of(ctx));
}

/* Reloads the file. Settings that need new listeners or pools are logged as needing a restart;
 * the running config object is replaced whole so nothing sees a half-applied change. */
static int process_reload(gw_ctx *ctx)
{
    cfg *next = NULL;
    if (cfg_load(ctx->cfg->path, &next, stderr) != 0) {
        gw_error(ctx, "reload of %s failed; keeping the running configuration", ctx->cfg->path);
        return -1;
    }
    if (mongo_config_check(next, stderr) != 0) {
        gw_error(ctx, "reload of %s failed; keeping the running configuration", ctx->cfg->path);
        cfg_free(next);
        return -1;
    }
    gw_tls_conf *tls = NULL;
    char err[512];
    if (gw_tls_conf_from_cfg(next, &tls, err, sizeof err) != 0) {
        gw_error(ctx, "reload of %s refused: %s; keeping the running configuration", ctx->cfg->path,
                 err);
        cfg_free(next);
        return -1;
    }
    /* Connections already in TLS keep the context they began with (they hold a reference). */
    gw_tls_conf_release(ctx->client_tls);
    ctx->client_tls = tls;
    cfg *old = ctx->cfg;
    if (strcmp(old->listen_addr, next->listen_addr) != 0 || old->listen_port != next->listen_port ||
        strcmp(old->unix_socket_dir, next->unix_socket_dir) != 0)
        gw_warn(ctx, "listen_addr, listen_port and unix_socket_dir take effect at the next "
                     "restart");
    gw_info(ctx, "configuration reloaded from %s", next->path);
    ctx->cfg = next;
    ctx->cfg_gen++;
    cfg_free(old);
    return 0;
}

/* What /ready asks the front ends. */
static gw_metrics_reach_fn *const reach[] = {pg_servers_reachable, mongo_servers_reachable};

static const gw_process_ops process_ops = {.reload = process_reload, .shutdown = process_shutdown};

static void on_hup(uv_signal_t *h, int signum)
{
    (void)signum;
    process_reload(&((gw_process *)h->data)->ctx);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", required_argument, NULL, 'k'},
        {"make-verifier", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL;
    bool check_only = false;
    int o;
    while ((o = getopt_long(argc, argv, "c:k:m:hV", opts, NULL)) != -1) {
        switch (o) {
        case 'm':
            if (optind != argc) {
                usage(stderr);
                return 2;
            }
            return make_verifier(optarg);
        case 'c':
            config_path = optarg;
            break;
        case 'k':
            config_path = optarg;
            check_only = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("sluice 0.1.0\n");
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!config_path || optind != argc) {
        usage(stderr);
        return 2;
    }

    /* Before any thread starts (setenv and getenv are not thread safe). */
    pg_scrub_environment();
    uint8_t key[16];
    if (uv_random(NULL, NULL, key, sizeof key, 0, NULL) != 0) {
        fprintf(stderr, "sluice: no random source for the hash key\n");
        return 1;
    }
    gw_hash_seed(key);

    mongo_global_init();
    cfg *conf = NULL;
    int rc = cfg_load(config_path, &conf, stderr);
    if (rc == 0 && mongo_config_check(conf, stderr) != 0)
        rc = -1;
    gw_tls_conf *client_tls = NULL;
    if (rc == 0) {
        char err[512];
        if (gw_tls_conf_from_cfg(conf, &client_tls, err, sizeof err) != 0) {
            fprintf(stderr, "%s: %s\n", config_path, err);
            rc = -1;
        }
    }
    if (check_only || rc != 0) {
        gw_tls_conf_release(client_tls);
        if (rc == 0)
            printf("%s: configuration is valid\n", config_path);
        cfg_free(conf);
        mongo_global_cleanup();
        return rc == 0 ? 0 : 1;
    }

    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    uv_loop_t loop;
    uv_loop_init(&loop);
    gw_process pr = {.ctx = {.loop = &loop,
                             .cfg = conf,
                             .cfg_gen = 1,
                             .client_tls = client_tls,
                             .process = &process_ops}};
    gw_ctx *const ctx = &pr.ctx;
    if (uv_random(NULL, NULL, ctx->auth_seed, sizeof ctx->auth_seed, 0, NULL) != 0) {
        fprintf(stderr, "sluice: no random source for the authentication seed\n");
        return 1;
    }

    uv_signal_init(&loop, &pr.sig_int);
    uv_signal_init(&loop, &pr.sig_term);
    uv_signal_init(&loop, &pr.sig_hup);
    pr.sig_int.data = pr.sig_term.data = pr.sig_hup.data = &pr;
    uv_signal_start(&pr.sig_int, on_stop_signal, SIGINT);
    uv_signal_start(&pr.sig_term, on_stop_signal, SIGTERM);
    uv_signal_start(&pr.sig_hup, on_hup, SIGHUP);

    int exit_code = 0;
    if (gw_metrics_start(ctx, reach, 2, &pr.metrics) != 0 || pg_gateway_start(ctx) != 0 ||
        (conf->n_mongo > 0 && mongo_gateway_start(ctx) != 0)) {
        exit_code = 1;
        begin_shutdown(&pr);
    } else {
        gw_info(ctx, "sluice started (pool_mode=%s)", cfg_pool_mode_name(conf->pool_mode));
    }

    uv_run(&loop, UV_RUN_DEFAULT);
    /* The metrics endpoint answers (/ready: 503) while the front ends drain, and does not keep
     * the loop alive; close it now that they are done. */
    gw_metrics_stop(pr.metrics);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        gw_error(ctx, "event loop closed with handles still open");
        exit_code = 1;
    }
    gw_admin_free(ctx);
    cfg_free(ctx->cfg);
    gw_tls_conf_release(ctx->client_tls);
    mongo_global_cleanup();
    return exit_code;
}
