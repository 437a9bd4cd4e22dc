/*
 * Fuzzes the configuration loader (cfg_load_string, the in-memory twin of cfg_load) over
 * arbitrary text, diagnostics included; a config that loads is then queried the way the
 * gateway queries it and compared with itself for restart-only changes (there must be none).
 */
#include <string.h>

#include "config/cfg.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Diagnostics are formatted and written like a real load's, to nowhere; opened once. */
    static FILE *diag;
    if (!diag)
        diag = fopen("/dev/null", "w");
    char *text = malloc(size + 1);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = 0;

    cfg *c = (cfg *)1;
    int rc = cfg_load_string(text, "fuzz.ini", &c, diag);
    free(text);
    FUZZ_CHECK(rc == 0 || rc == -1);
    FUZZ_CHECK(rc == 0 ? c != NULL : c == NULL);
    if (rc != 0)
        return 0;

    const char *names[64];
    FUZZ_CHECK(cfg_restart_keys(c, c, names, 64) == 0);
    FUZZ_CHECK(cfg_pool_mode_name(c->pool_mode) != NULL);
    for (size_t i = 0; i < c->n_dbs; i++) {
        const cfg_database *db = cfg_find_database(c, c->dbs[i].name);
        FUZZ_CHECK(db != NULL);
        (void)cfg_db_pool_size(c, db);
        FUZZ_CHECK(cfg_pool_mode_name(cfg_db_pool_mode(c, db)) != NULL);
        (void)cfg_db_max_connections(c, db);
        for (size_t j = 0; j < db->n_conn; j++)
            FUZZ_CHECK(db->conn[j].key && db->conn[j].value);
    }
    const cfg_database *any = cfg_find_database(c, "no such database");
    FUZZ_CHECK(!any || strcmp(any->name, "*") == 0);
    for (size_t i = 0; i < c->n_mongo; i++)
        FUZZ_CHECK(c->mongo[i].name && c->mongo[i].uri && c->mongo[i].listen_port > 0);
    cfg_free(c);
    return 0;
}
