/*
 * pg_sql.h: what a query text does that a transaction pooler must know about.
 *
 * A pure lexer and classifier: no allocation, no I/O, no recursion, linear time. Texts are
 * (sql, len) and need not be NUL-terminated: nothing at or past sql + len is read. The text is
 * split and lexed as the server's scanner does (scan.l): ';' separates statements; comments
 * ("--" lines, nested block comments), string constants ('', E'', U&'', B'', X'', N'',
 * $tag$...$tag$, with SQL's newline continuation) and "quoted" identifiers are never mistaken
 * for keywords. Most bits come from the leading keywords of a statement (after any opening
 * parentheses); the function-call bits come from identifiers anywhere in a statement.
 *
 * Blind spots, by design: code Sluice cannot see runs whatever it likes (the body of a function
 * or procedure it calls; see PG_SQL_OPAQUE for the visible cases), and the text is read as bytes,
 * so a client encoding whose multibyte characters may contain the byte '\' (SJIS, BIG5, GBK,
 * UHC, GB18030, JOHAB) can make E'...' strings end elsewhere than the server sees them.
 */
#ifndef SLUICE_PG_SQL_H
#define SLUICE_PG_SQL_H

#include <stdbool.h>
#include <stddef.h>

/* What a query text does that a transaction pooler must know about (bit flags). */
enum {
    /* SET or RESET of a session-level parameter: SET [SESSION] name {TO|=} ..., SET TIME ZONE,
     * SET SCHEMA, SET NAMES, SET XML OPTION, RESET name, RESET TIME ZONE, and SET SESSION
     * CHARACTERISTICS AS TRANSACTION (which sets default_transaction_*). Each parameter is
     * reported to pg_sql_scan's param callback. Not SET LOCAL, SET TRANSACTION, SET
     * CONSTRAINTS, RESET TRANSACTION ISOLATION LEVEL, nor SET/RESET of transaction_isolation,
     * transaction_read_only, transaction_deferrable (every transaction starts them afresh);
     * role and session_authorization are PG_SQL_ROLE. */
    PG_SQL_SESSION_SET = 1 << 0,
    /* SET [SESSION] ROLE, SET [SESSION] SESSION AUTHORIZATION, RESET ROLE, RESET SESSION
     * AUTHORIZATION (also spelt as the parameters role and session_authorization). */
    PG_SQL_ROLE = 1 << 1,
    /* A session-level set_config(): its third argument is anything but a literal true ('t',
     * 'true', 'y', 'yes', 'on', '1', TRUE), positional or named is_local => ...; also a call
     * that cannot be read (set_config named but not called, nested calls) and UPDATE of the
     * pg_settings view in the same statement (its rule calls set_config(..., false)). */
    PG_SQL_SET_CONFIG = 1 << 2,
    /* A LISTEN or UNLISTEN statement. */
    PG_SQL_LISTEN = 1 << 3,
    /* A temporary object: CREATE [OR REPLACE] [GLOBAL|LOCAL] TEMP|TEMPORARY ... (except CREATE
     * TEMP TABLE ... ON COMMIT DROP, which lasts the transaction), SELECT ... INTO
     * [GLOBAL|LOCAL] TEMP|TEMPORARY, or any identifier pg_temp / pg_temp_N (the session's own
     * schema: CREATE TABLE pg_temp.t, functions in pg_temp). */
    PG_SQL_TEMP = 1 << 4,
    /* A session-level advisory lock function is named: pg_[try_]advisory_lock[_shared],
     * pg_advisory_unlock[_shared], pg_advisory_unlock_all (not the _xact_ ones). */
    PG_SQL_ADVISORY_LOCK = 1 << 5,
    /* SQL-level prepared statements: PREPARE name ..., EXECUTE, DEALLOCATE (any form), or a
     * reference to pg_prepared_statements. Not PREPARE TRANSACTION 'gid' (two-phase commit). */
    PG_SQL_PREPARE = 1 << 6,
    /* DECLARE ... CURSOR WITH HOLD (the cursor outlives the transaction). */
    PG_SQL_HOLD_CURSOR = 1 << 7,
    /* The session's parameters go back to their connection defaults: RESET ALL, DISCARD ALL.
     * (DISCARD ALL also drops prepared statements, temporary tables, LISTENs, advisory locks and
     * resets the role.) DISCARD PLANS/SEQUENCES/TEMP leave parameters alone and get no bit. */
    PG_SQL_RESET_ALL = 1 << 8,
    /* LOAD 'library' (the library stays loaded in the session). */
    PG_SQL_LOAD = 1 << 9,
    /* At least one statement that is not LISTEN or UNLISTEN: a query made only of LISTEN and
     * UNLISTEN statements has PG_SQL_LISTEN without PG_SQL_OTHER (see pg_sql_listen_each). An
     * empty query has no bit at all. */
    PG_SQL_OTHER = 1 << 10,
    /* Runs SQL Sluice cannot see, which may do any of the above: a DO block, query_to_xml(),
     * query_to_xmlschema(), query_to_xml_and_xmlschema() (they execute their text argument), or
     * a U&"..." identifier (whose escapes Sluice does not decode, so it could name anything). */
    PG_SQL_OPAQUE = 1 << 11,
};

/*
 * The PG_SQL_* bits of sql[0, len). param (may be NULL) is called with arg for every
 * session-level parameter a PG_SQL_SESSION_SET statement sets or resets, its name folded as the
 * server folds identifiers (ASCII lower-cased unless double-quoted, each part truncated to 63
 * bytes, dotted names such as myapp.user kept whole; the server matches parameter names
 * case-insensitively, and so should the caller). name is NUL-terminated and valid during the call
 * only; n == 0 means a name Sluice could not read (or longer than 255 bytes), which no parameter
 * has. A name may be reported more than once.
 *
 * standard_conforming_strings decides where '...' strings holding a backslash end; when one does,
 * the text is classified under both settings and the bits are merged, so the answer holds
 * whatever the session's setting.
 */
unsigned pg_sql_scan(const char *sql, size_t len,
                     void (*param)(const char *name, size_t n, void *arg), void *arg);

/*
 * Walks a query made only of LISTEN and UNLISTEN statements (empty statements allowed). For each
 * statement, in order, cb (may be NULL) gets kind 'L' (LISTEN channel), 'U' (UNLISTEN channel)
 * or '*' (UNLISTEN *, channel ""), the channel folded like an identifier (ASCII lower-cased
 * unless double-quoted, truncated to 63 bytes as NAMEDATALEN does) and NUL-terminated, valid
 * during the call only. Returns the number of statements (0 for an empty query), or -1 without
 * calling cb at all when any statement is something else or is malformed (a reserved word or a
 * U&"..." as channel, an unterminated quote, a string constant...): the server must see it.
 */
int pg_sql_listen_each(const char *sql, size_t len,
                       void (*cb)(char kind, const char *channel, size_t n, void *arg), void *arg);

/*
 * True when sql[0, len) surely holds nothing a pooler must know about: pg_sql_scan would return
 * exactly PG_SQL_OTHER without reporting a parameter, and pg_sql_may_reset (pg_int.h) false.
 * Decided on the raw bytes without lexing, at a fraction of pg_sql_scan's cost, for the common
 * case (SELECT, INSERT, UPDATE, DELETE, BEGIN, COMMIT...). False means only "look closer": it is
 * false for many texts that are plain too (a word such as "temp" or "pg_" anywhere, a comment at
 * the start of a statement).
 *
 * It holds because every bit and every report comes either from the leading keyword of a
 * statement, which starts the text or follows a ';' (a ';' inside a string only adds a place to
 * look), or from a word that must appear in the raw bytes, in any case, wherever a string or
 * comment puts it.
 */
bool pg_sql_plain(const char *sql, size_t len);

#endif
