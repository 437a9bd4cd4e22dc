/*
 * cfg_man: the sluice.ini(5) manual page, written from the key table (cfg_keys.c) like the
 * Markdown reference in config/README.md, so the page cannot miss a key or disagree with the
 * defaults. The build runs it through config/cfg_man_main.c and installs the output.
 */
#include <stdint.h>
#include <string.h>

#include "config/cfg_int.h"

/*
 * Writes s, a Markdown-ish sentence from the table, as roff text: `code` becomes bold, a
 * Markdown-escaped pipe a plain one, a backslash \e, a line-leading dot or quote is protected
 * with \&, and every non-ASCII character becomes \[uXXXX] so groff needs no input encoding.
 */
static void put_text(FILE *out, const char *s)
{
    bool bold = false;
    const unsigned char *p = (const unsigned char *)s;
    if (*p == '.' || *p == '\'')
        fputs("\\&", out);
    while (*p) {
        if (*p == '`') {
            fputs(bold ? "\\fR" : "\\fB", out);
            bold = !bold;
            p++;
        } else if (p[0] == '\\' && p[1] == '|') {
            fputc('|', out);
            p += 2;
        } else if (*p == '\\') {
            fputs("\\e", out);
            p++;
        } else if (*p == '-') {
            fputs("\\-", out);
            p++;
        } else if (*p < 0x80) {
            fputc(*p++, out);
        } else {
            /* Decode one UTF-8 sequence; a stray byte is shown as U+FFFD. */
            uint32_t cp = 0xFFFD;
            int len = *p >= 0xF0 ? 4 : *p >= 0xE0 ? 3 : *p >= 0xC0 ? 2 : 1;
            if (len > 1) {
                cp = *p & (0x7F >> len);
                for (int i = 1; i < len; i++) {
                    if ((p[i] & 0xC0) != 0x80) {
                        cp = 0xFFFD;
                        len = i;
                        break;
                    }
                    cp = cp << 6 | (p[i] & 0x3F);
                }
            }
            fprintf(out, "\\[u%04X]", (unsigned)cp);
            p += len;
        }
    }
    if (bold)
        fputs("\\fR", out);
    fputc('\n', out);
}

/* Fixed prose; each string is one roff input line (requests start with a dot). */
static const char *const head[] = {
    ".TH SLUICE.INI 5 \"\" \"Sluice\" \"File Formats\"",
    ".SH NAME",
    "sluice.ini \\- configuration file of the Sluice connection pooler",
    ".SH SYNOPSIS",
    ".B /etc/sluice/sluice.ini",
    ".SH DESCRIPTION",
    ".BR sluice (1)",
    "reads one INI file, given with \\fB\\-\\-config\\fR.",
    "Key names and meanings follow PgBouncer wherever the concept is the same.",
    "There are three sections, in any order:",
    ".BR [sluice] ,",
    ".B [databases]",
    "and",
    ".BR [mongodb] .",
    ".PP",
    "One \\fIname\\fR = \\fIvalue\\fR per line.",
    "A line starting with ; or # is a comment, and so is the rest of a line from a ; that",
    "follows whitespace outside single quotes.",
    "A",
    ".B [sluice]",
    "key may be set once.",
    "Times are seconds, fractions allowed, or a number with a unit",
    "(\\fBms\\fR, \\fBs\\fR, \\fBmin\\fR, \\fBh\\fR); 0 disables a timeout.",
    "Sizes are bytes or a number with \\fBkB\\fR, \\fBMB\\fR or \\fBGB\\fR (1024-based).",
    ".PP",
    "Loading reports every problem as \\fIfile\\fR:\\fIline\\fR: \\fImessage\\fR and starts",
    "nothing unless there are none; \\fBsluice \\-\\-check\\fR \\fIfile\\fR does only that.",
    "On SIGHUP a file with errors is reported the same way and the running configuration stays.",
    ".SH \"[sluice] SECTION\"",
    "Each key shows its type or unit, its default, and whether a reload applies a new value",
    "or it needs a restart.",
    NULL,
};

static const char *const tail[] = {
    ".SH \"[databases] SECTION\"",
    "PgBouncer's line format:",
    ".PP",
    ".RS",
    "\\fIname\\fR = \\fIkeyword\\fR=\\fIvalue\\fR ... [\\fBpool_size\\fR=\\fIN\\fR]",
    "[\\fBpool_mode\\fR=\\fBsession\\fR|\\fBtransaction\\fR] "
    "[\\fBmax_db_connections\\fR=\\fIN\\fR]",
    ".RE",
    ".PP",
    "The name is the database clients ask for; the keywords are libpq's, quoted as in a libpq",
    "connection string.",
    "\\fBdbname\\fR defaults to the name asked for and \\fBuser\\fR to the client's user.",
    "\\fBpool_size\\fR, \\fBpool_mode\\fR, \\fBmax_db_connections\\fR, \\fBauth_user\\fR,",
    "\\fBauth_dbname\\fR and \\fBauth_query\\fR override the",
    ".B [sluice]",
    "values for this database.",
    "The name \\fB*\\fR is the fallback for any database without a line of its own.",
    "A password in a line never appears in the log.",
    ".SH \"[mongodb] SECTION\"",
    "One line per MongoDB deployment, each with its own listener:",
    ".PP",
    ".RS",
    "\\fIname\\fR = \\fBlisten_port\\fR=\\fIN\\fR \\fBuri\\fR=\\fBmongodb://\\fR...",
    "[\\fBpool_size\\fR=\\fIN\\fR] [\\fBlisten_addr\\fR=\\fIA\\fR]",
    "[\\fBmax_client_conn\\fR=\\fIN\\fR] [\\fBquery_timeout\\fR=\\fIT\\fR]",
    "[\\fBquery_wait_timeout\\fR=\\fIT\\fR] "
    "[\\fBauth_type\\fR=\\fBtrust\\fR|\\fBscram\\-sha\\-256\\fR]",
    ".RE",
    ".PP",
    "Defaults come from",
    ".BR [sluice] .",
    "The log shows a URI's password as \\fB****\\fR.",
    ".SH FILES",
    ".TP",
    ".B /etc/sluice/sluice.ini",
    "The configuration file the packaged service unit names.",
    ".SH \"SEE ALSO\"",
    ".BR sluice (1),",
    ".BR pgbouncer (5)",
    NULL,
};

void cfg_write_man(FILE *out)
{
    for (const char *const *l = head; *l; l++)
        fprintf(out, "%s\n", *l);
    for (const cfg_key *k = cfg__keys; k->name; k++) {
        fprintf(out, ".TP\n.B %s\n", k->name);
        char meta[512];
        snprintf(meta, sizeof meta, "(%s; default %s%s%s; %s)", cfg__type_unit(k->type),
                 *k->def ? "`" : "", *k->def ? k->def : "empty", *k->def ? "`" : "",
                 k->reload == CFG_RELOAD ? "reload applies it" : "needs a restart");
        put_text(out, meta);
        fputs(".br\n", out);
        put_text(out, k->doc);
    }
    for (const char *const *l = tail; *l; l++)
        fprintf(out, "%s\n", *l);
}
