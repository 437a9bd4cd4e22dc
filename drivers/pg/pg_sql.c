/*
 * pg_sql: the SQL Sluice must recognise. Sluice does not parse SQL: it lexes a query text as the
 * server's scanner (src/backend/parser/scan.l) does, so that nothing inside a string, a comment
 * or a quoted identifier is taken for a keyword, then looks at the leading keywords of each
 * statement and at a few identifiers anywhere. The lexer keeps no state beyond a position and
 * never recurses: a text of any size costs one pass (two, see pg_sql_scan) and constant stack.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_sql.h"

/* The server truncates identifiers to NAMEDATALEN - 1 bytes. */
#define IDENT_MAX 63
/* Room for a dotted parameter name (myapp.sub.key) reported to pg_sql_scan's callback. */
#define PARAM_NAME_MAX 255

/* ---- Lexer --------------------------------------------------------------------------------- */

typedef enum tok_kind {
    TK_END,    /* end of the text */
    TK_SEMI,   /* ';': ends a statement */
    TK_IDENT,  /* unquoted identifier or keyword */
    TK_QIDENT, /* "quoted identifier" */
    TK_UIDENT, /* U&"identifier": its escapes are not decoded */
    TK_STRING, /* any string constant, dollar-quoted ones included */
    TK_PARAM,  /* $1 */
    TK_NUMBER, /* the digits of a number (the rest, if any, lexes as other tokens) */
    TK_CHAR,   /* any other byte; operators come one byte at a time */
} tok_kind;

typedef struct sql_tok {
    const unsigned char *p; /* first byte (a string's prefix letter included) */
    size_t n;
    tok_kind kind;
    bool open; /* the text ended inside this string or quoted identifier */
} sql_tok;

typedef struct sql_lex {
    const unsigned char *s;
    size_t len, pos;
    /* Read '...' strings as E'...' ones (standard_conforming_strings = off). */
    bool backslash_strings;
    /* A '...' string held a backslash: the other setting may end it elsewhere. */
    bool ambiguous;
} sql_lex;

static bool is_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r'); /* \t \n \v \f \r */
}

static bool is_newline(unsigned char c)
{
    return c == '\n' || c == '\r';
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* ident_start in scan.l; high-bit bytes are identifier characters in every server encoding. */
static bool ident_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static bool ident_cont(unsigned char c)
{
    return ident_start(c) || is_digit(c) || c == '$';
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

static sql_lex lex_init(const char *sql, size_t len, bool backslash_strings)
{
    sql_lex lx = {(const unsigned char *)sql, sql ? len : 0, 0, backslash_strings, false};
    return lx;
}

/* The end of a "--" comment starting at i: its newline, or the end of the text. */
static size_t line_end(const sql_lex *lx, size_t i)
{
    while (i < lx->len && !is_newline(lx->s[i]))
        i++;
    return i;
}

/* Skips whitespace and comments. Block comments nest; an unterminated one runs to the end. */
static void skip_blanks(sql_lex *lx)
{
    const unsigned char *s = lx->s;
    size_t i = lx->pos, len = lx->len;
    while (i < len) {
        unsigned char c = s[i];
        if (is_space(c)) {
            i++;
        } else if (c == '-' && i + 1 < len && s[i + 1] == '-') {
            i = line_end(lx, i);
        } else if (c == '/' && i + 1 < len && s[i + 1] == '*') {
            size_t depth = 1;
            for (i += 2; i < len && depth > 0;) {
                if (s[i] == '/' && i + 1 < len && s[i + 1] == '*') {
                    depth++;
                    i += 2;
                } else if (s[i] == '*' && i + 1 < len && s[i + 1] == '/') {
                    depth--;
                    i += 2;
                } else {
                    i++;
                }
            }
        } else {
            break;
        }
    }
    lx->pos = i;
}

/* Where a string whose closing quote is just before i continues (SQL's 'a'<newline>'b': only
 * whitespace and "--" comments between, a newline among them), else 0. */
static size_t continuation(const sql_lex *lx, size_t i)
{
    bool newline = false;
    while (i < lx->len) {
        unsigned char c = lx->s[i];
        if (c == '-' && i + 1 < lx->len && lx->s[i + 1] == '-') {
            i = line_end(lx, i);
            continue;
        }
        if (is_newline(c))
            newline = true;
        else if (!is_space(c))
            break;
        i++;
    }
    return newline && i < lx->len && lx->s[i] == '\'' ? i + 1 : 0;
}

typedef enum str_mode {
    STR_STANDARD, /* '...' and N'...': backslashes as standard_conforming_strings says */
    STR_ESCAPE,   /* E'...': a backslash escapes the next byte */
    STR_RAW,      /* B'...', X'...', U&'...': a backslash is an ordinary byte */
} str_mode;

/* Scans a quoted string whose body starts at i; returns the position after its closing quote. */
static size_t scan_string(sql_lex *lx, size_t i, str_mode mode, bool *open)
{
    const unsigned char *s = lx->s;
    size_t len = lx->len;
    bool escapes = mode == STR_ESCAPE || (mode == STR_STANDARD && lx->backslash_strings);
    for (;;) {
        while (i < len) {
            unsigned char c = s[i];
            if (c == '\'') {
                if (i + 1 < len && s[i + 1] == '\'') {
                    i += 2;
                    continue;
                }
                break;
            }
            if (c == '\\') {
                if (escapes) {
                    i += 2;
                    continue;
                }
                if (mode == STR_STANDARD)
                    lx->ambiguous = true;
            }
            i++;
        }
        if (i >= len) {
            *open = true;
            return len;
        }
        size_t next = continuation(lx, i + 1);
        if (!next)
            return i + 1;
        i = next;
    }
}

/* Scans a quoted identifier whose body starts at i ("" is a quote). */
static size_t scan_qident(const sql_lex *lx, size_t i, bool *open)
{
    for (; i < lx->len; i++) {
        if (lx->s[i] != '"')
            continue;
        if (i + 1 < lx->len && lx->s[i + 1] == '"') {
            i++;
            continue;
        }
        return i + 1;
    }
    *open = true;
    return lx->len;
}

/* A dollar-quoted string at i ('$'): its end, or 0 when no $tag$ starts there. The tag is
 * [A-Za-z_\200-\377][A-Za-z0-9_\200-\377]* or empty; the body ends at the first copy of the
 * opening delimiter, found in linear time (a partial match never spans another '$'). */
static size_t scan_dollar(const sql_lex *lx, size_t i, bool *open)
{
    const unsigned char *s = lx->s;
    size_t len = lx->len, t = i + 1;
    if (t < len && ident_start(s[t]))
        while (t < len && (ident_start(s[t]) || is_digit(s[t])))
            t++;
    if (t >= len || s[t] != '$')
        return 0;
    size_t tag = t + 1 - i; /* both '$' included */
    for (size_t j = t + 1; j < len;) {
        const unsigned char *d = memchr(s + j, '$', len - j);
        if (!d)
            break;
        size_t k = (size_t)(d - s);
        if (len - k >= tag && memcmp(d, s + i, tag) == 0)
            return k + tag;
        j = k + 1;
    }
    *open = true;
    return len;
}

static sql_tok lex_next(sql_lex *lx)
{
    skip_blanks(lx);
    const unsigned char *s = lx->s;
    size_t i = lx->pos, len = lx->len, end = i + 1;
    sql_tok t = {s + i, 0, TK_END, false};
    if (i >= len)
        return t;
    unsigned char c = s[i];
    bool quote1 = i + 1 < len && s[i + 1] == '\'';
    bool uamp = (c == 'u' || c == 'U') && i + 2 < len && s[i + 1] == '&';
    if (c == ';') {
        t.kind = TK_SEMI;
    } else if (c == '\'') {
        t.kind = TK_STRING;
        end = scan_string(lx, i + 1, STR_STANDARD, &t.open);
    } else if (c == '"') {
        t.kind = TK_QIDENT;
        end = scan_qident(lx, i + 1, &t.open);
    } else if (quote1 && (c == 'e' || c == 'E')) {
        t.kind = TK_STRING;
        end = scan_string(lx, i + 2, STR_ESCAPE, &t.open);
    } else if (quote1 && (c == 'n' || c == 'N')) {
        t.kind = TK_STRING;
        end = scan_string(lx, i + 2, STR_STANDARD, &t.open);
    } else if (quote1 && (c == 'b' || c == 'B' || c == 'x' || c == 'X')) {
        t.kind = TK_STRING;
        end = scan_string(lx, i + 2, STR_RAW, &t.open);
    } else if (uamp && s[i + 2] == '\'') {
        t.kind = TK_STRING;
        end = scan_string(lx, i + 3, STR_RAW, &t.open);
    } else if (uamp && s[i + 2] == '"') {
        t.kind = TK_UIDENT;
        end = scan_qident(lx, i + 3, &t.open);
    } else if (ident_start(c)) {
        t.kind = TK_IDENT;
        while (end < len && ident_cont(s[end]))
            end++;
    } else if (is_digit(c)) {
        t.kind = TK_NUMBER;
        while (end < len && is_digit(s[end]))
            end++;
    } else if (c == '$' && end < len && is_digit(s[end])) {
        t.kind = TK_PARAM;
        while (end < len && is_digit(s[end]))
            end++;
    } else if (c == '$' && (end = scan_dollar(lx, i, &t.open)) != 0) {
        t.kind = TK_STRING;
    } else {
        t.kind = TK_CHAR;
        end = i + 1;
    }
    t.n = end - i;
    lx->pos = end;
    return t;
}

/* ---- Tokens -------------------------------------------------------------------------------- */

static bool is_term(const sql_tok *t)
{
    return t->kind == TK_END || t->kind == TK_SEMI;
}

static bool is_char(const sql_tok *t, char c)
{
    return t->kind == TK_CHAR && t->p[0] == (unsigned char)c;
}

/* Whether t is the unquoted keyword w (lower case), in any case. */
static bool kw_n(const sql_tok *t, const char *w, size_t n)
{
    if (t->kind != TK_IDENT || t->n != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(t->p[i]) != (unsigned char)w[i])
            return false;
    return true;
}
#define KW(t, w) kw_n((t), (w), sizeof(w) - 1)

static bool name_is_n(const char *name, size_t n, const char *w, size_t wn)
{
    return n == wn && memcmp(name, w, n) == 0;
}
#define NAME_IS(name, n, w) name_is_n((name), (n), (w), sizeof(w) - 1)

/* An identifier token folded as the server folds it: unquoted ASCII lower-cased, quoted with ""
 * unescaped, then truncated to IDENT_MAX bytes without splitting a UTF-8 character (as
 * pg_mbcliplen does in a UTF-8 database). out[] is NUL-terminated. -1 for any other token, an
 * unterminated or empty quoted identifier, or a U&"..." one. */
static int fold_ident(const sql_tok *t, char out[IDENT_MAX + 1])
{
    size_t n = 0;
    if (t->kind == TK_IDENT) {
        for (size_t i = 0; i < t->n && n <= IDENT_MAX; i++)
            out[n++] = (char)lower(t->p[i]);
    } else if (t->kind == TK_QIDENT && !t->open) {
        for (size_t i = 1; i + 1 < t->n && n <= IDENT_MAX; i++) {
            out[n++] = (char)t->p[i];
            if (t->p[i] == '"')
                i++; /* "" */
        }
        if (n == 0)
            return -1;
    } else {
        return -1;
    }
    if (n > IDENT_MAX) {
        n = IDENT_MAX; /* out[IDENT_MAX] is the first byte cut: never cut a character in two */
        while (n > 0 && ((unsigned char)out[n] & 0xC0) == 0x80)
            n--;
    }
    out[n] = 0;
    return (int)n;
}

/* Reserved and type/function-name keywords: not a ColId, so no statement or channel name. */
static bool reserved(const sql_tok *t)
{
    static const char words[] =
        " all analyse analyze and any array as asc asymmetric authorization binary both case cast"
        " check collate collation column concurrently constraint create cross current_catalog"
        " current_date current_role current_schema current_time current_timestamp current_user"
        " default deferrable desc distinct do else end except false fetch for foreign freeze from"
        " full grant group having ilike in initially inner intersect into is isnull join lateral"
        " leading left like limit localtime localtimestamp natural not notnull null offset on only"
        " or order outer overlaps placing primary references returning right select session_user"
        " similar some symmetric system_user table tablesample then to trailing true union unique"
        " user using variadic verbose when where window with ";
    char w[20];
    if (t->kind != TK_IDENT || t->n > sizeof w - 3)
        return false;
    w[0] = ' ';
    for (size_t i = 0; i < t->n; i++)
        w[i + 1] = (char)lower(t->p[i]);
    w[t->n + 1] = ' ';
    w[t->n + 2] = 0;
    return strstr(words, w) != NULL;
}

/* A ColId (statement, cursor or channel name) folded into out; -1 when t is none. */
static int col_id(const sql_tok *t, char out[IDENT_MAX + 1])
{
    return reserved(t) ? -1 : fold_ident(t, out);
}

/* ---- Classifier ---------------------------------------------------------------------------- */

typedef enum sc_state {
    SC_IDLE,  /* no set_config seen */
    SC_NAMED, /* the previous token was set_config: a '(' must follow */
    SC_CALL,  /* inside its argument list */
} sc_state;

/* What an argument token of set_config() can be, for the is_local test. */
enum { ARG_OTHER, ARG_TRUE, ARG_IS_LOCAL, ARG_EQ, ARG_GT, ARG_COLON };

typedef struct sql_scan {
    sql_lex lx;
    unsigned bits;
    void (*param)(const char *name, size_t n, void *arg);
    void *arg;
    sql_tok peeked;
    bool have_peek;
    bool at_term; /* the last token taken ended the statement: nothing to peek at */
    /* Per statement, kept up to date by observe() for every token taken. */
    size_t depth;      /* ( and [ nesting */
    uint8_t into;      /* 1: after INTO (not INSERT/MERGE INTO); 2: after INTO GLOBAL|LOCAL */
    bool after_insert; /* the previous token was INSERT or MERGE */
    bool saw_update;   /* the keyword UPDATE */
    bool saw_settings; /* the identifier pg_settings */
    sc_state sc;       /* a set_config() call being read */
    size_t sc_depth;   /* depth outside its parentheses */
    unsigned sc_argi;  /* index of the current argument */
    unsigned sc_ntok;  /* tokens in the current argument so far */
    uint8_t sc_tok[4]; /* ARG_* of its first tokens */
    bool sc_local;     /* is_local is a literal true */
} sql_scan;

static void report(sql_scan *st, const char *name, size_t n)
{
    st->bits |= PG_SQL_SESSION_SET;
    if (st->param)
        st->param(name, n, st->arg);
}

/* 'true' and the other spellings boolin reads as true, without prefixes or blanks. */
static bool true_string(const sql_tok *t)
{
    static const char *const words[] = {"t", "true", "y", "yes", "on", "1"};
    if (t->kind != TK_STRING || t->open || t->p[0] != '\'' || t->n < 3 || t->n > 6)
        return false;
    sql_tok body = {t->p + 1, t->n - 2, TK_IDENT, false};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (kw_n(&body, words[i], strlen(words[i])))
            return true;
    return false;
}

static uint8_t arg_class(const sql_tok *t, const char *name, int n)
{
    if (KW(t, "true") || true_string(t))
        return ARG_TRUE;
    if (n >= 0 && NAME_IS(name, (size_t)n, "is_local"))
        return ARG_IS_LOCAL;
    if (is_char(t, '='))
        return ARG_EQ;
    if (is_char(t, '>'))
        return ARG_GT;
    if (is_char(t, ':'))
        return ARG_COLON;
    return ARG_OTHER;
}

/* The end of a set_config() argument: is it is_local, and a literal true? */
static void sc_arg_done(sql_scan *st)
{
    const uint8_t *a = st->sc_tok;
    if (st->sc_argi == 2 && st->sc_ntok == 1 && a[0] == ARG_TRUE)
        st->sc_local = true;
    if (st->sc_ntok == 4 && a[0] == ARG_IS_LOCAL &&
        ((a[1] == ARG_EQ && a[2] == ARG_GT) || (a[1] == ARG_COLON && a[2] == ARG_EQ)) &&
        a[3] == ARG_TRUE)
        st->sc_local = true; /* is_local => true, is_local := true */
    st->sc_argi++;
    st->sc_ntok = 0;
}

/* Identifiers that matter wherever they appear in a statement. */
static void observe_name(sql_scan *st, const char *name, size_t n)
{
    if (n < 7 || (name[0] != 'p' && name[0] != 's' && name[0] != 'q'))
        return;
    if (NAME_IS(name, n, "set_config")) {
        if (st->sc == SC_IDLE)
            st->sc = SC_NAMED;
        else
            st->bits |= PG_SQL_SET_CONFIG; /* one call inside another: not followed */
    } else if (NAME_IS(name, n, "pg_advisory_lock") ||
               NAME_IS(name, n, "pg_advisory_lock_shared") ||
               NAME_IS(name, n, "pg_try_advisory_lock") ||
               NAME_IS(name, n, "pg_try_advisory_lock_shared") ||
               NAME_IS(name, n, "pg_advisory_unlock") ||
               NAME_IS(name, n, "pg_advisory_unlock_shared") ||
               NAME_IS(name, n, "pg_advisory_unlock_all")) {
        st->bits |= PG_SQL_ADVISORY_LOCK;
    } else if (n >= 7 && memcmp(name, "pg_temp", 7) == 0) {
        bool digits = n > 8 && name[7] == '_';
        for (size_t i = 8; digits && i < n; i++)
            digits = is_digit((unsigned char)name[i]);
        if (n == 7 || digits)
            st->bits |= PG_SQL_TEMP;
    } else if (NAME_IS(name, n, "pg_prepared_statements")) {
        st->bits |= PG_SQL_PREPARE;
    } else if (NAME_IS(name, n, "pg_settings")) {
        st->saw_settings = true;
    } else if (NAME_IS(name, n, "query_to_xml") || NAME_IS(name, n, "query_to_xmlschema") ||
               NAME_IS(name, n, "query_to_xml_and_xmlschema")) {
        st->bits |= PG_SQL_OPAQUE;
    }
}

/* Sees every token of a statement once, whatever the statement is. */
static void observe(sql_scan *st, const sql_tok *t)
{
    char name[IDENT_MAX + 1];
    int n = -1;
    if ((t->kind == TK_IDENT || t->kind == TK_QIDENT) && t->n <= 40)
        n = fold_ident(t, name);

    if (st->sc == SC_NAMED) {
        st->sc = SC_IDLE;
        if (is_char(t, '(')) {
            st->sc = SC_CALL;
            st->sc_depth = st->depth;
            st->sc_argi = st->sc_ntok = 0;
            st->sc_local = false;
        } else {
            st->bits |= PG_SQL_SET_CONFIG; /* named, not called: cannot tell */
        }
    } else if (st->sc == SC_CALL) {
        if (st->depth == st->sc_depth + 1 && (is_char(t, ',') || is_char(t, ')'))) {
            sc_arg_done(st);
            if (is_char(t, ')')) {
                if (!st->sc_local)
                    st->bits |= PG_SQL_SET_CONFIG;
                st->sc = SC_IDLE;
            }
        } else {
            if (st->sc_ntok < sizeof st->sc_tok)
                st->sc_tok[st->sc_ntok] = arg_class(t, name, n);
            if (st->sc_ntok < UINT_MAX)
                st->sc_ntok++;
        }
    }

    if (is_char(t, '(') || is_char(t, '['))
        st->depth++;
    else if ((is_char(t, ')') || is_char(t, ']')) && st->depth > 0)
        st->depth--;

    if (t->kind == TK_UIDENT)
        st->bits |= PG_SQL_OPAQUE;
    if (n >= 0)
        observe_name(st, name, (size_t)n);

    /* SELECT ... INTO [GLOBAL|LOCAL] TEMP|TEMPORARY t; INSERT INTO temp and MERGE INTO temp
     * name a table called temp. */
    if (KW(t, "into")) {
        st->into = st->after_insert ? 0 : 1;
    } else if (st->into == 1 && (KW(t, "global") || KW(t, "local"))) {
        st->into = 2;
    } else {
        if (st->into && (KW(t, "temp") || KW(t, "temporary")))
            st->bits |= PG_SQL_TEMP;
        st->into = 0;
    }
    st->after_insert = KW(t, "insert") || KW(t, "merge");
    if (KW(t, "update"))
        st->saw_update = true;
}

/* Takes the next token of the statement (the peeked one first) and observes it. */
static sql_tok next(sql_scan *st)
{
    sql_tok t;
    if (st->have_peek) {
        t = st->peeked;
        st->have_peek = false;
    } else {
        t = lex_next(&st->lx);
    }
    st->at_term = is_term(&t);
    if (!st->at_term)
        observe(st, &t);
    return t;
}

/* The token after the last one taken, left in place; an end after a statement's end. */
static const sql_tok *peek(sql_scan *st)
{
    if (st->have_peek)
        return &st->peeked;
    if (st->at_term) {
        st->peeked = (sql_tok){st->lx.s + st->lx.pos, 0, TK_END, false};
        return &st->peeked;
    }
    st->peeked = lex_next(&st->lx);
    st->have_peek = true;
    return &st->peeked;
}

/* After a word that may also be a parameter's name: does a parameter assignment follow? */
static bool assigns(const sql_tok *t)
{
    return is_char(t, '=') || is_char(t, '.') || KW(t, "to");
}

/* var_name: ColId ('.' ColId)*, from t; reports it or takes it for a role change. */
static sql_tok set_var(sql_scan *st, sql_tok t)
{
    char name[PARAM_NAME_MAX + 1], part[IDENT_MAX + 1];
    size_t n = 0;
    for (;;) {
        int k = fold_ident(&t, part);
        if (k < 0 || n + (n > 0) + (size_t)k > PARAM_NAME_MAX) {
            report(st, "", 0);
            return t;
        }
        if (n > 0)
            name[n++] = '.';
        memcpy(name + n, part, (size_t)k);
        n += (size_t)k;
        if (!is_char(peek(st), '.'))
            break;
        next(st);
        t = next(st);
    }
    name[n] = 0;
    if (NAME_IS(name, n, "role") || NAME_IS(name, n, "session_authorization"))
        st->bits |= PG_SQL_ROLE;
    else if (!NAME_IS(name, n, "transaction_isolation") &&
             !NAME_IS(name, n, "transaction_read_only") &&
             !NAME_IS(name, n, "transaction_deferrable"))
        report(st, name, n); /* those three start again from default_* in every transaction */
    return t;
}

/* SET SESSION CHARACTERISTICS AS TRANSACTION mode, ...: the session's default_transaction_*. */
static sql_tok set_characteristics(sql_scan *st, sql_tok t)
{
    st->bits |= PG_SQL_SESSION_SET;
    for (; !is_term(&t); t = next(st)) {
        if (KW(&t, "isolation"))
            report(st, "default_transaction_isolation", 29);
        else if (KW(&t, "read"))
            report(st, "default_transaction_read_only", 29);
        else if (KW(&t, "deferrable"))
            report(st, "default_transaction_deferrable", 30);
    }
    return t;
}

/* After SET. Each special form is a keyword that could also start a parameter's name
 * (SET role = 'x', SET local.x = 1), so it counts only when no assignment follows. */
static sql_tok head_set(sql_scan *st)
{
    sql_tok t = next(st);
    const sql_tok *p = peek(st);
    if (KW(&t, "local") && !assigns(p))
        return t; /* SET LOCAL: ends with the transaction */
    if (KW(&t, "session") && !assigns(p) && !KW(p, "authorization") && !KW(p, "characteristics")) {
        t = next(st);
        p = peek(st);
    }
    if (assigns(p))
        return set_var(st, t);
    if (KW(&t, "transaction") || KW(&t, "constraints"))
        return t; /* last the transaction */
    if (KW(&t, "role") || (KW(&t, "session") && KW(p, "authorization"))) {
        st->bits |= PG_SQL_ROLE;
        return t;
    }
    if (KW(&t, "session") && KW(p, "characteristics"))
        return set_characteristics(st, t);
    if (KW(&t, "time") && KW(p, "zone"))
        report(st, "timezone", 8);
    else if (KW(&t, "schema"))
        report(st, "search_path", 11);
    else if (KW(&t, "names"))
        report(st, "client_encoding", 15);
    else if (KW(&t, "xml") && KW(p, "option"))
        report(st, "xmloption", 9);
    else
        return set_var(st, t);
    return t;
}

/* After RESET. */
static sql_tok head_reset(sql_scan *st)
{
    sql_tok t = next(st);
    const sql_tok *p = peek(st);
    if (KW(&t, "all"))
        st->bits |= PG_SQL_RESET_ALL;
    else if (KW(&t, "time") && KW(p, "zone"))
        report(st, "timezone", 8);
    else if (KW(&t, "session") && KW(p, "authorization"))
        st->bits |= PG_SQL_ROLE;
    else if (!KW(&t, "transaction") || !KW(p, "isolation")) /* that one: see set_var */
        return set_var(st, t);
    return t;
}

/* After CREATE: [OR REPLACE] [GLOBAL|LOCAL] TEMP|TEMPORARY. A TEMP TABLE with ON COMMIT DROP
 * (before any AS query, outside parentheses) is gone when its transaction ends. */
static sql_tok head_create(sql_scan *st)
{
    sql_tok t = next(st);
    if (KW(&t, "or") && KW(peek(st), "replace")) {
        next(st);
        t = next(st);
    }
    if (KW(&t, "global") || KW(&t, "local"))
        t = next(st);
    if (!KW(&t, "temp") && !KW(&t, "temporary"))
        return t;
    t = next(st);
    if (KW(&t, "table")) {
        for (; !is_term(&t); t = next(st)) {
            if (st->depth == 0 && KW(&t, "as"))
                break;
            if (st->depth == 0 && KW(&t, "on") && KW(peek(st), "commit")) {
                next(st);
                if (KW(peek(st), "drop"))
                    return next(st);
            }
        }
    }
    st->bits |= PG_SQL_TEMP;
    return t;
}

/* After DECLARE: WITH HOLD before the FOR of the query. */
static sql_tok head_declare(sql_scan *st)
{
    sql_tok t = next(st);
    for (; !is_term(&t) && !KW(&t, "for"); t = next(st))
        if (KW(&t, "with") && KW(peek(st), "hold")) {
            st->bits |= PG_SQL_HOLD_CURSOR;
            break;
        }
    return t;
}

/* Classifies a statement by its leading keywords; returns the last token taken. */
static sql_tok head(sql_scan *st, sql_tok t)
{
    while (is_char(&t, '('))
        t = next(st);
    if (KW(&t, "listen") || KW(&t, "unlisten")) {
        st->bits |= PG_SQL_LISTEN;
        return t;
    }
    st->bits |= PG_SQL_OTHER;
    if (KW(&t, "set"))
        return head_set(st);
    if (KW(&t, "reset"))
        return head_reset(st);
    if (KW(&t, "create"))
        return head_create(st);
    if (KW(&t, "declare"))
        return head_declare(st);
    if (KW(&t, "discard")) {
        t = next(st);
        if (KW(&t, "all"))
            st->bits |= PG_SQL_RESET_ALL;
    } else if (KW(&t, "prepare")) {
        t = next(st);
        if (!KW(&t, "transaction") || peek(st)->kind != TK_STRING)
            st->bits |= PG_SQL_PREPARE;
    } else if (KW(&t, "execute") || KW(&t, "deallocate")) {
        st->bits |= PG_SQL_PREPARE;
    } else if (KW(&t, "load")) {
        st->bits |= PG_SQL_LOAD;
    } else if (KW(&t, "do")) {
        st->bits |= PG_SQL_OPAQUE;
    }
    return t;
}

static unsigned scan_pass(const char *sql, size_t len, bool backslash_strings,
                          void (*param)(const char *name, size_t n, void *arg), void *arg,
                          bool *ambiguous)
{
    sql_scan st = {.lx = lex_init(sql, len, backslash_strings), .param = param, .arg = arg};
    for (;;) {
        sql_scan fresh = {.lx = st.lx, .bits = st.bits, .param = param, .arg = arg};
        st = fresh;
        sql_tok t = next(&st);
        if (t.kind == TK_END)
            break;
        if (t.kind == TK_SEMI)
            continue;
        t = head(&st, t);
        while (!is_term(&t))
            t = next(&st);
        if (st.sc != SC_IDLE || (st.saw_settings && st.saw_update))
            st.bits |= PG_SQL_SET_CONFIG;
        if (t.kind == TK_END)
            break;
    }
    if (ambiguous)
        *ambiguous = st.lx.ambiguous;
    return st.bits;
}

unsigned pg_sql_scan(const char *sql, size_t len,
                     void (*param)(const char *name, size_t n, void *arg), void *arg)
{
    bool ambiguous = false;
    unsigned bits = scan_pass(sql, len, false, param, arg, &ambiguous);
    if (ambiguous)
        bits |= scan_pass(sql, len, true, param, arg, NULL);
    return bits;
}

/* ---- LISTEN / UNLISTEN --------------------------------------------------------------------- */

/* One pass over the statements; cb NULL only checks them. The number of statements or -1. */
static int listen_pass(const char *sql, size_t len,
                       void (*cb)(char kind, const char *channel, size_t n, void *arg), void *arg)
{
    sql_lex lx = lex_init(sql, len, false);
    int count = 0;
    for (;;) {
        sql_tok t = lex_next(&lx);
        if (t.kind == TK_END)
            return count;
        if (t.kind == TK_SEMI)
            continue;
        char kind, name[IDENT_MAX + 1];
        int n = 0;
        if (KW(&t, "listen"))
            kind = 'L';
        else if (KW(&t, "unlisten"))
            kind = 'U';
        else
            return -1;
        t = lex_next(&lx);
        if (kind == 'U' && is_char(&t, '*')) {
            kind = '*';
            name[0] = 0;
        } else if ((n = col_id(&t, name)) < 0) {
            return -1;
        }
        t = lex_next(&lx);
        if (!is_term(&t) || count == INT_MAX)
            return -1;
        count++;
        if (cb)
            cb(kind, name, (size_t)n, arg);
        if (t.kind == TK_END)
            return count;
    }
}

int pg_sql_listen_each(const char *sql, size_t len,
                       void (*cb)(char kind, const char *channel, size_t n, void *arg), void *arg)
{
    int n = listen_pass(sql, len, NULL, NULL);
    if (n > 0 && cb)
        listen_pass(sql, len, cb, arg);
    return n;
}

/* ---- Older matchers, on the lexer ---------------------------------------------------------- */

bool pg_sql_deallocate_name(const char *sql, char *out, size_t cap)
{
    sql_lex lx = lex_init(sql, sql ? strlen(sql) : 0, false);
    sql_tok t = lex_next(&lx);
    if (!KW(&t, "deallocate"))
        return false;
    sql_tok name = lex_next(&lx), end = lex_next(&lx);
    if (KW(&name, "prepare") && !is_term(&end)) { /* else a statement called prepare */
        name = end;
        end = lex_next(&lx);
    }
    if (end.kind == TK_SEMI)
        end = lex_next(&lx);
    if (end.kind != TK_END)
        return false;
    char folded[IDENT_MAX + 1];
    int n = col_id(&name, folded); /* DEALLOCATE ALL is reserved ALL */
    if (n < 0 || (size_t)n >= cap)
        return false;
    memcpy(out, folded, (size_t)n + 1);
    return true;
}

/* A word of the text: the bytes between two non-identifier bytes ('$' separates, so that a word
 * right after a dollar quote's delimiter counts). */
static bool word_char(unsigned char c)
{
    return ident_start(c) || is_digit(c);
}

bool pg_sql_may_reset(const char *sql, size_t len)
{
    /* Deliberately not lexed: the words may sit in the body of a DO block or function (a
     * string), and a false "may" only costs a closer look at the parameters reported. Comments
     * count too, which is harmless. set_config(name, NULL, ...) resets; a U&"..." identifier
     * may spell it. */
    const unsigned char *s = (const unsigned char *)sql;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '&' && i > 0 && lower(s[i - 1]) == 'u' && i + 1 < len && s[i + 1] == '"')
            return true;
        if (!word_char(s[i]))
            continue;
        size_t j = i;
        while (j < len && word_char(s[j]))
            j++;
        sql_tok w = {s + i, j - i, TK_IDENT, false};
        if (KW(&w, "reset") || KW(&w, "default") || KW(&w, "discard") || KW(&w, "set_config"))
            return true;
        i = j - 1;
    }
    return false;
}

/* ---- The common case, on the raw bytes ----------------------------------------------------- */

/* Whether the lower-cased bytes at p spell w. */
static bool spells(const unsigned char *p, size_t room, const char *w, size_t n)
{
    if (room < n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(p[i]) != (unsigned char)w[i])
            return false;
    return true;
}
#define SPELLS(p, room, w) spells((p), (room), (w), sizeof(w) - 1)

/* Whether w is spelt around s[i], which is its byte at index at. */
static inline bool around(const unsigned char *s, size_t len, size_t i, size_t at, const char *w,
                          size_t n)
{
    return i >= at && spells(s + i - at, len - (i - at), w, n);
}

/* Whether s[i] is the anchor of a word that observe() or pg_sql_may_reset acts on wherever it
 * appears: temp (and temporary), the pg_ names, set_config, query_to_xml*, U&"..." (u&),
 * reset, default, discard. Each word is looked for as a substring, in any case, around its
 * rarest byte in SQL (its anchor), so that no tokenisation can hide one. */
static bool matters_anywhere(const unsigned char *s, size_t len, size_t i)
{
#define AROUND(w, at) around(s, len, i, (at), (w), sizeof(w) - 1)
    switch (lower(s[i])) {
    case '_':
        return AROUND("pg_", 2) || AROUND("set_config", 3);
    case 'q':
        return AROUND("query_to_xml", 0);
    case '&':
        return AROUND("u&", 1);
    case 'm':
        return AROUND("temp", 2);
    case 'f':
        return AROUND("default", 2);
    case 'r':
        return AROUND("reset", 0) || AROUND("discard", 5);
    default:
        return false;
    }
#undef AROUND
}

/* Whether the statement that may start at i (the text's start, or just after any ';') could
 * lead with a keyword head() acts on. Blanks and '(' are skipped as head() skips them; a
 * comment is not looked behind. The text's first statement must also lead with a word, so that
 * it surely is one (an empty text has no bit at all). */
static bool may_lead(const unsigned char *s, size_t len, size_t i, bool first)
{
    while (i < len && (is_space(s[i]) || s[i] == '('))
        i++;
    if (i == len)
        return first;
    if (i + 1 < len && ((s[i] == '-' && s[i + 1] == '-') || (s[i] == '/' && s[i + 1] == '*')))
        return true;
    if (!ident_start(s[i]))
        return first;
    size_t j = i + 1;
    while (j < len && ident_cont(s[j]))
        j++;
    const unsigned char *w = s + i;
    size_t n = j - i;
    switch (n) {
    case 2:
        return SPELLS(w, n, "do");
    case 3:
        return SPELLS(w, n, "set");
    case 4:
        return SPELLS(w, n, "load");
    case 5:
        return SPELLS(w, n, "reset");
    case 6:
        return SPELLS(w, n, "listen") || SPELLS(w, n, "create");
    case 7:
        return SPELLS(w, n, "declare") || SPELLS(w, n, "discard") || SPELLS(w, n, "prepare") ||
               SPELLS(w, n, "execute");
    case 8:
        return SPELLS(w, n, "unlisten");
    case 10:
        return SPELLS(w, n, "deallocate");
    default:
        return false;
    }
}

/* The bytes pg_sql_plain stops at: ';' and the anchors of matters_anywhere's words. */
static const bool stop_byte[256] = {
    [';'] = true, ['_'] = true, ['&'] = true, ['q'] = true, ['Q'] = true, ['m'] = true,
    ['M'] = true, ['f'] = true, ['F'] = true, ['r'] = true, ['R'] = true,
};

bool pg_sql_plain(const char *sql, size_t len)
{
    const unsigned char *s = (const unsigned char *)sql;
    if (!s || may_lead(s, len, 0, true))
        return false;
    for (size_t i = 0;; i++) {
        /* Four bytes a step: most of a text is passed over here. */
        while (i + 4 <= len &&
               !(stop_byte[s[i]] | stop_byte[s[i + 1]] | stop_byte[s[i + 2]] | stop_byte[s[i + 3]]))
            i += 4;
        while (i < len && !stop_byte[s[i]])
            i++;
        if (i == len)
            return true;
        if (s[i] == ';' ? may_lead(s, len, i + 1, false) : matters_anywhere(s, len, i))
            return false;
    }
}
