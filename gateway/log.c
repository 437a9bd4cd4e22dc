/*
 * log: gw_log and gw_log_conn build one line, in log_format, and hand it to the outputs
 * (gateway/log_sink.c). Everything logged is escaped here: control characters in text (so a
 * client-chosen name cannot start a forged line), JSON's escapes and invalid UTF-8 in json (so
 * every line parses).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/gw.h"
#include "gateway/log_sink.h"

static const char *const level_names[] = {"ERROR", "WARNING", "INFO", "DEBUG"};
static const char *const json_levels[] = {"error", "warning", "info", "debug"};

/* A line under construction; appends past the end are dropped (the line is truncated, never
 * overrun), and TAIL bytes stay free for whatever closes it. */
enum { LINE_CAP = 4096, TAIL = 8 };
typedef struct line {
    char s[LINE_CAP];
    size_t len;
    bool cut; /* something did not fit */
} line;

static void put(line *l, const char *s, size_t n)
{
    if (n > LINE_CAP - TAIL - l->len) {
        l->cut = true;
        return;
    }
    memcpy(l->s + l->len, s, n);
    l->len += n;
}

static void puts_(line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    size_t len = p[0] < 0x80             ? 1
                 : (p[0] & 0xE0) == 0xC0 ? 2
                 : (p[0] & 0xF0) == 0xE0 ? 3
                 : (p[0] & 0xF8) == 0xF0 ? 4
                                         : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    /* Overlong forms, surrogates and code points past U+10FFFF are invalid too. */
    if ((len == 2 && p[0] < 0xC2) || (len == 3 && p[0] == 0xE0 && p[1] < 0xA0) ||
        (len == 3 && p[0] == 0xED && p[1] >= 0xA0) || (len == 4 && p[0] == 0xF0 && p[1] < 0x90) ||
        (len == 4 && (p[0] > 0xF4 || (p[0] == 0xF4 && p[1] >= 0x90))))
        return 0;
    return len;
}

/* s as a JSON string's contents. */
static void put_json(line *l, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    char esc[8];
    while (n > 0) {
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put(l, esc, 2);
        } else if (*p < 0x20 || *p == 0x7F) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            put(l, esc, 6);
        } else if (*p >= 0x80) {
            size_t len = utf8_len(p, n);
            if (len == 0) {
                put(l, "\\ufffd", 6);
                len = 1;
            } else {
                put(l, (const char *)p, len);
            }
            p += len;
            n -= len;
            continue;
        } else {
            put(l, (const char *)p, 1);
        }
        p++;
        n--;
    }
}

/* s in a text line: control characters as \xNN, a backslash doubled. */
static void put_text(line *l, const char *s)
{
    char esc[8];
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7F) {
            snprintf(esc, sizeof esc, "\\x%02x", *p);
            put(l, esc, 4);
        } else if (*p == '\\') {
            put(l, "\\\\", 2);
        } else {
            put(l, (const char *)p, 1);
        }
    }
}

/* ,"name":"value" whole or not at all, so a full line stays valid JSON. */
static void put_json_field(line *l, const char *name, const char *value)
{
    if (!value)
        return;
    line f; /* not zeroed: 4 kB per field per line would be most of the cost */
    f.len = 0;
    f.cut = false;
    put(&f, ",\"", 2);
    puts_(&f, name);
    put(&f, "\":\"", 3);
    put_json(&f, value);
    put(&f, "\"", 1);
    if (!f.cut)
        put(l, f.s, f.len);
}

static void put_json_id(line *l, const char *name, uint64_t id)
{
    if (id == 0)
        return;
    char num[64];
    snprintf(num, sizeof num, ",\"%s\":%llu", name, (unsigned long long)id);
    puts_(l, num);
}

/* "pg client 5 server 3 app/alice@127.0.0.1:5000: " for the text format. */
static void put_text_who(line *l, const gw_log_who *who)
{
    char num[48];
    if (who->protocol) {
        put_text(l, who->protocol);
        put(l, " ", 1);
    }
    if (who->client_id) {
        snprintf(num, sizeof num, "client %llu ", (unsigned long long)who->client_id);
        puts_(l, num);
    }
    if (who->server_id) {
        snprintf(num, sizeof num, "server %llu ", (unsigned long long)who->server_id);
        puts_(l, num);
    }
    if (who->database || who->user)
        put_text(l, who->database ? who->database : "?");
    if (who->user) {
        put(l, "/", 1);
        put_text(l, who->user);
    }
    if (who->address) {
        put(l, "@", 1);
        put_text(l, who->address);
    }
    if (l->len > 0 && l->s[l->len - 1] == ' ')
        l->len--;
    put(l, ": ", 2);
}

void gw_log_msg(const gw_ctx *ctx, cfg_log_level level, const gw_log_who *who, const char *msg)
{
    if ((unsigned)level > CFG_LOG_DEBUG)
        level = CFG_LOG_ERROR;
    if (ctx && ctx->cfg && level > ctx->cfg->log_level)
        return;
    bool json = ctx && ctx->cfg && ctx->cfg->log_format == CFG_LOGFMT_JSON;
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[64];
    snprintf(stamp, sizeof stamp,
             json ? "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ" : "%04d-%02d-%02d %02d:%02d:%02d.%03ld",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             ts.tv_nsec / 1000000);

    line l;
    l.len = 0;
    l.cut = false;
    size_t body; /* where what syslog gets begins: it stamps lines itself */
    if (json) {
        body = 0;
        puts_(&l, "{\"time\":\"");
        puts_(&l, stamp);
        puts_(&l, "\",\"level\":\"");
        puts_(&l, json_levels[level]);
        put(&l, "\"", 1);
        if (who) {
            put_json_field(&l, "protocol", who->protocol);
            put_json_id(&l, "client_id", who->client_id);
            put_json_id(&l, "server_id", who->server_id);
            put_json_field(&l, "database", who->database);
            put_json_field(&l, "user", who->user);
            put_json_field(&l, "address", who->address);
            put_json_field(&l, "reason", who->reason);
        }
        /* The message last: a long one is cut, escape by escape, and TAIL keeps room for
         * what closes the line, so every line parses. */
        puts_(&l, ",\"message\":\"");
        put_json(&l, msg);
        l.s[l.len++] = '"';
        l.s[l.len++] = '}';
    } else {
        puts_(&l, stamp);
        put(&l, " ", 1);
        puts_(&l, level_names[level]);
        put(&l, " ", 1);
        body = l.len;
        if (who)
            put_text_who(&l, who);
        put_text(&l, msg);
    }
    l.s[l.len++] = '\n';
    gw__log_write(ctx, level, l.s, l.len, body);
}

void gw_vlog_conn(const gw_ctx *ctx, cfg_log_level level, const gw_log_who *who, const char *fmt,
                  va_list ap)
{
    if (ctx && ctx->cfg && level > ctx->cfg->log_level)
        return;
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    gw_log_msg(ctx, level, who, msg);
}

void gw_log_conn(const gw_ctx *ctx, cfg_log_level level, const gw_log_who *who, const char *fmt,
                 ...)
{
    va_list ap;
    va_start(ap, fmt);
    gw_vlog_conn(ctx, level, who, fmt, ap);
    va_end(ap);
}

void gw_log(const gw_ctx *ctx, cfg_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    gw_vlog_conn(ctx, level, NULL, fmt, ap);
    va_end(ap);
}

void gw_sockaddr_text(const struct sockaddr *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN];
    out[0] = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host))
            snprintf(out, cap, "%s:%u", host, ntohs(in4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host))
            snprintf(out, cap, "[%s]:%u", host, ntohs(in6->sin6_port));
    }
}

_Noreturn void gw__assert_fail(const char *what, const char *file, int lineno)
{
    fprintf(stderr, "sluice: assertion failed: %s (%s:%d)\n", what, file, lineno);
    abort();
}
