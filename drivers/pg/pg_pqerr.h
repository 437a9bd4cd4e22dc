/*
 * pg_pqerr: reads a server's refusal out of libpq's connection-phase error text. libpq offers no
 * PGresult for errors during the login, only PQerrorMessage; with PQERRORS_VERBOSE each server
 * error in it has the shape "SEVERITY:  SQLSTATE: message". The parser goes by that shape alone,
 * never by the words: the severity is localised by the server's lc_messages ("FATAL",
 * "SCHWERWIEGEND", ...), the SQLSTATE is not.
 */
#ifndef SLUICE_PG_PQERR_H
#define SLUICE_PG_PQERR_H

#include <stdbool.h>
#include <stddef.h>

/* When text holds a server error, copies the SQLSTATE of the last one (5 characters [0-9A-Z]
 * plus NUL) to sqlstate and its message line (truncated to cap - 1 bytes) to msg, and returns
 * true. False when no server error is in it (a network error, a timeout, a libpq failure):
 * sqlstate and msg are then untouched. */
bool pg_pqerr_parse(const char *text, char sqlstate[6], char *msg, size_t cap);

#endif
