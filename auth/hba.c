/*
 * hba: the pg_hba.conf subset PgBouncer accepts. Record types local, host, hostssl, hostnossl;
 * database and user lists with all, sameuser (database column), replication (matches no client:
 * Sluice carries no replication connections), quoted names and @file includes; addresses all,
 * IPv4/IPv6 with /bits or a separate netmask; methods trust, reject, md5, password,
 * scram-sha-256 and cert. What PgBouncer refuses (+group, samerole, samehost, host names, ...)
 * and what Sluice cannot do (peer, ldap, options such as map=) is a load error naming file:line,
 * where PgBouncer would skip the line: a skipped "reject" line would let clients in.
 */
#include "auth/auth_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef enum hba_type {
    HBA_LOCAL,     /* Unix-socket clients */
    HBA_HOST,      /* TCP clients, TLS or not */
    HBA_HOSTSSL,   /* TCP clients over TLS */
    HBA_HOSTNOSSL, /* TCP clients without TLS */
} hba_type;

typedef struct hba_rule {
    hba_type type;
    int line;
    auth__hba_names db, user;
    bool addr_all;    /* "all", or a local line */
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* already masked */
    uint8_t mask[16];
    auth_method method;
} hba_rule;

struct auth_hba {
    hba_rule *r;
    size_t n, cap;
};

/* ---- addresses ---- */

/* "a.b.c.d", "a.b.c.d/n", "x::y", "x::y/n" into r (mask from /n, or all ones without it).
 * 0, 1 when a separate netmask must follow, -EINVAL with *why. */
static int parse_addr(hba_rule *r, char *s, const char **why)
{
    char *slash = strchr(s, '/');
    if (slash)
        *slash = '\0';
    if (inet_pton(AF_INET, s, r->addr) == 1)
        r->family = AF_INET;
    else if (inet_pton(AF_INET6, s, r->addr) == 1)
        r->family = AF_INET6;
    else {
        *why = strcmp(s, "samehost") == 0 || strcmp(s, "samenet") == 0
                   ? "samehost and samenet are not supported"
                   : "not an IPv4 or IPv6 address (host names are not supported)";
        return -EINVAL;
    }
    if (!slash)
        return 1;
    const int max = r->family == AF_INET ? 32 : 128;
    int bits = 0;
    const char *b = slash + 1;
    for (; *b >= '0' && *b <= '9' && bits <= max; b++)
        bits = bits * 10 + (*b - '0');
    if (b == slash + 1 || *b || bits > max) {
        *why = "the prefix length after '/' is not 0 to 32 (IPv4) or 0 to 128 (IPv6)";
        return -EINVAL;
    }
    memset(r->mask, 0, sizeof r->mask);
    for (int i = 0; i < bits; i++)
        r->mask[i / 8] |= (uint8_t)(0x80 >> (i % 8));
    return 0;
}

static int parse_mask(hba_rule *r, const char *s, const char **why)
{
    uint8_t m[16];
    if (inet_pton(r->family, s, m) != 1) {
        *why = r->family == AF_INET ? "the netmask is not an IPv4 address"
                                    : "the netmask is not an IPv6 address";
        return -EINVAL;
    }
    memcpy(r->mask, m, r->family == AF_INET ? 4 : 16);
    return 0;
}

/* 16 or 4 bytes of a client's address in *a; a v4-mapped IPv6 address (a dual-stack listener's
 * IPv4 client) counts as IPv4. The family, or 0 for a Unix socket. */
static int client_addr(const struct sockaddr *sa, uint8_t a[16])
{
    if (sa->sa_family == AF_INET) {
        memcpy(a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return AF_INET;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(in6)) {
            memcpy(a, in6->s6_addr + 12, 4);
            return AF_INET;
        }
        memcpy(a, in6->s6_addr, 16);
        return AF_INET6;
    }
    return 0;
}

static bool addr_match(const hba_rule *r, int family, const uint8_t a[16])
{
    if (r->addr_all)
        return true;
    if (family != r->family)
        return false;
    for (int i = 0; i < (family == AF_INET ? 4 : 16); i++)
        if ((a[i] & r->mask[i]) != r->addr[i])
            return false;
    return true;
}

/* ---- lines ---- */

static const struct {
    const char *name;
    auth_method method;
} methods[] = {
    {"trust", AUTH_M_TRUST},       {"reject", AUTH_M_REJECT},       {"md5", AUTH_M_MD5},
    {"password", AUTH_M_PASSWORD}, {"scram-sha-256", AUTH_M_SCRAM}, {"cert", AUTH_M_CERT},
};

/* The items of field f: first index in *first, their count returned. */
static size_t field(const auth__hba_toks *t, int f, size_t *first)
{
    size_t i = 0, n = 0;
    while (i < t->n && t->it[i].field < f)
        i++;
    *first = i;
    while (i + n < t->n && t->it[i + n].field == f)
        n++;
    return n;
}

/* The one unquoted item of field f, or NULL with *why. */
static char *single(const auth__hba_toks *t, int f, const char *what, const char **why)
{
    size_t i;
    const size_t n = field(t, f, &i);
    if (n == 0) {
        *why = what;
        return NULL;
    }
    if (n > 1 || t->it[i].quoted) {
        *why = "a list or a quoted word where one keyword or address belongs";
        return NULL;
    }
    return t->it[i].s;
}

static int parse_names(auth__hba_names *nm, const auth__hba_toks *t, int f, bool db,
                       const auth__hba_src *src)
{
    size_t i;
    const size_t n = field(t, f, &i);
    int rc = 0;
    for (size_t k = 0; rc == 0 && k < n; k++)
        rc = auth__hba_names_item(nm, &t->it[i + k], db, src);
    return rc;
}

/* One line's tokens into r. 0 (nothing to add when t is empty: r->line stays 0), or -EINVAL
 * (diagnosed) / -ENOMEM. */
static int parse_rule(hba_rule *r, auth__hba_toks *t, const auth__hba_src *src)
{
    const char *why = NULL;
    if (t->n == 0)
        return 0;
    static const char *const types[] = {"local", "host", "hostssl", "hostnossl"};
    const char *type = single(t, 0, "", &why);
    size_t k = 0;
    while (type && k < 4 && strcmp(type, types[k]) != 0)
        k++;
    if (!type || k == 4) {
        why = type && (strcmp(type, "hostgssenc") == 0 || strcmp(type, "hostnogssenc") == 0)
                  ? "GSSAPI encryption is not supported"
                  : "the record type is not local, host, hostssl or hostnossl";
        goto bad;
    }
    r->type = (hba_type)k;
    r->line = src->line;
    int rc;
    if ((rc = parse_names(&r->db, t, 1, true, src)) < 0 ||
        (rc = parse_names(&r->user, t, 2, false, src)) < 0)
        return rc;
    if (t->fields < 3) {
        why = "a line needs a database and a user column";
        goto bad;
    }
    int f = 3;
    if (r->type == HBA_LOCAL) {
        r->addr_all = true;
    } else {
        char *addr = single(t, f++, "the address is missing", &why);
        if (!addr)
            goto bad;
        if (strcmp(addr, "all") == 0) {
            r->addr_all = true;
        } else {
            memset(r->mask, 0xff, sizeof r->mask);
            rc = parse_addr(r, addr, &why);
            if (rc < 0)
                goto bad;
            const char *mask = rc == 1 ? single(t, f++, "the netmask is missing", &why) : "";
            if (!mask || (rc == 1 && parse_mask(r, mask, &why) < 0))
                goto bad;
            bool extra = false;
            for (int i = 0; i < 16; i++) {
                extra |= (r->addr[i] & ~r->mask[i]) != 0;
                r->addr[i] &= r->mask[i];
            }
            if (extra)
                auth__diag(src->diag, src->name, src->line,
                           "warning: the address has bits outside its mask; they are ignored");
        }
    }
    const char *method = single(t, f, "the authentication method is missing", &why);
    if (!method)
        goto bad;
    k = 0;
    while (k < sizeof methods / sizeof methods[0] && strcmp(method, methods[k].name) != 0)
        k++;
    if (k == sizeof methods / sizeof methods[0]) {
        auth__diag(src->diag, src->name, src->line,
                   "authentication method \"%s\" is not supported (trust, reject, md5, password, "
                   "scram-sha-256, cert)",
                   method);
        return -EINVAL;
    }
    r->method = methods[k].method;
    if (r->method == AUTH_M_CERT && r->type == HBA_LOCAL) {
        why = "cert needs TLS, which a local connection does not have";
        goto bad;
    }
    if (t->fields > f + 1) {
        why = "options after the method (such as map=) are not supported";
        goto bad;
    }
    return 0;
bad:
    auth__diag(src->diag, src->name, src->line, "%s", why);
    return -EINVAL;
}

static void rule_free(hba_rule *r)
{
    auth__hba_names_free(&r->db);
    auth__hba_names_free(&r->user);
}

void auth_hba_free(auth_hba *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++)
        rule_free(&h->r[i]);
    free(h->r);
    free(h);
}

int auth_hba_parse(const char *text, size_t len, const char *name, auth_hba **out, FILE *diag)
{
    *out = NULL;
    auth_hba *h = calloc(1, sizeof *h);
    auth__hba_toks t = {.buf = malloc(len + 1)};
    auth__hba_src src = {.diag = diag, .name = name};
    int errors = 0;
    bool oom = !h || !t.buf;
    if (oom) {
        auth__diag(diag, name, 0, "out of memory");
        errors++;
    }
    /* Every line is read, to report every problem at once; only memory running out stops. */
    for (const char *p = text, *end = text + len; !oom && p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        const char *why = NULL;
        src.line++;
        int rc = auth__hba_tokenize(p, eol, &t, &why);
        p = eol + (nl != NULL);
        if (rc < 0) {
            auth__diag(diag, name, src.line, "%s", why);
            errors++;
            oom = rc == -ENOMEM;
            continue;
        }
        if (t.n == 0)
            continue;
        if (h->n == h->cap) {
            hba_rule *grown = realloc(h->r, (h->cap = h->cap ? 2 * h->cap : 16) * sizeof *grown);
            if (!grown) {
                auth__diag(diag, name, src.line, "out of memory");
                errors++;
                oom = true;
                break;
            }
            h->r = grown;
        }
        hba_rule *r = &h->r[h->n];
        memset(r, 0, sizeof *r);
        if ((rc = parse_rule(r, &t, &src)) < 0) {
            if (rc == -ENOMEM)
                auth__diag(diag, name, src.line, "out of memory");
            oom = rc == -ENOMEM;
            rule_free(r);
            errors++;
            continue;
        }
        h->n++;
    }
    free(t.buf);
    free(t.it);
    if (errors) {
        auth_hba_free(h);
        return -1;
    }
    *out = h;
    return 0;
}

int auth_hba_load(const char *path, auth_hba **out, FILE *diag)
{
    char *text;
    size_t len;
    *out = NULL;
    const int rc = auth__read_file(path, &text, &len);
    if (rc < 0) {
        if (diag)
            fprintf(diag, "%s: cannot read: %s\n", path, strerror(-rc));
        return -1;
    }
    const int r = auth_hba_parse(text, len, path, out, diag);
    free(text);
    return r;
}

int auth_hba_match(const auth_hba *h, const auth_hba_client *c, auth_method *m, int *line)
{
    uint8_t a[16] = {0};
    const int family = c->addr ? client_addr(c->addr, a) : 0;
    for (size_t i = 0; h && i < h->n; i++) {
        const hba_rule *r = &h->r[i];
        if (family == 0 ? r->type != HBA_LOCAL
                        : r->type == HBA_LOCAL || (r->type == HBA_HOSTSSL && !c->tls) ||
                              (r->type == HBA_HOSTNOSSL && c->tls) || !addr_match(r, family, a))
            continue;
        if (!auth__hba_names_match(&r->db, c->database ? c->database : "", c->user) ||
            !auth__hba_names_match(&r->user, c->user ? c->user : "", NULL))
            continue;
        *m = r->method;
        if (line)
            *line = r->line;
        return 0;
    }
    return AUTH_FAIL;
}
