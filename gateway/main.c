/* sluice: entry point. Parses the command line and loads the config; gateway/process.c runs the
 * front ends on one libuv loop and handles signals. */
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
#include "drivers/pg/pg.h"
#include "gateway/gw.h"
#include "gateway/process.h"
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
    gw_process pr;
    if (gw_process_init(&pr, &loop, conf, client_tls) != 0) {
        fprintf(stderr, "sluice: cannot set up signal handling\n");
        return 1;
    }
    if (uv_random(NULL, NULL, pr.ctx.auth_seed, sizeof pr.ctx.auth_seed, 0, NULL) != 0) {
        fprintf(stderr, "sluice: no random source for the authentication seed\n");
        return 1;
    }
    int exit_code = gw_process_run(&pr);
    if (!mongo_global_cleanup()) {
        /* A worker thread is still inside libmongoc, in a selection or connect that only its
         * timeout ends: returning would run the exit handlers under it. */
        fprintf(stderr, "sluice: exiting while a MongoDB worker thread is still connecting\n");
        fflush(NULL);
        _exit(exit_code);
    }
    return exit_code;
}
