/*
 * mongo_redact: secrets out of text bound for a log or a client. A pure function, unit-tested on
 * its own.
 */
#ifndef SLUICE_MONGO_REDACT_H
#define SLUICE_MONGO_REDACT_H

#include <stddef.h>

/*
 * Copies text into out (n > 0 bytes; always NUL-terminated, cut short when it does not fit) with
 * every mongodb:// and mongodb+srv:// URI in it redacted: the password of its user info becomes
 * "****" (mongodb://user:****@host), and so does the value of every option that carries a secret
 * (authMechanismProperties, any *password* option). A URI ends at whitespace, a quote or the end
 * of text; its user info at its last '@', so that an unescaped '@' in a password hides the rest
 * of the password too (redacting too much, never too little). Returns out.
 */
char *mongo_redact(const char *text, char *out, size_t n);

#endif
