/*
 * Fuzzes the prepared-statement registry (pg_stmt.h) with an operation stream: statements are
 * interned and held as in-flight requests, bound to names of two clients, prepared on two servers
 * with small LRU caps, used, confirmed, removed. A shadow model of every client map and server
 * set checks each answer; at the end everything is released and the registry must be empty
 * (a reference count off by one leaves an entry behind or frees one still in use).
 */
#include <string.h>

#include "drivers/pg/pg_stmt.h"
#include "tests/fuzz/fuzz.h"

#define N_HELD    8
#define N_NAMES   8
#define N_SERVERS 2
#define N_CLIENTS 2
#define MAX_OPS   2048

typedef struct input {
    const uint8_t *p;
    size_t len, pos;
} input;

static uint8_t take(input *in)
{
    return in->pos < in->len ? in->p[in->pos++] : 0;
}

typedef struct server_model {
    pg_server_stmts set;
    int max;
    size_t n;
    pg_stmt *mru[MAX_OPS + 1]; /* most recently used first, as the set's LRU list */
    uint64_t pending[MAX_OPS + 1];
} server_model;

typedef struct world {
    pg_stmt_registry reg;
    pg_stmt *held[N_HELD]; /* in-flight requests' references */
    pg_client_stmts clients[N_CLIENTS];
    pg_stmt *bound[N_CLIENTS][N_NAMES]; /* the shadow of each client map */
    server_model servers[N_SERVERS];
} world;

static void name_of(char out[8], unsigned i)
{
    /* "" is the unnamed statement, which clients rebind all the time */
    if (i == 0)
        out[0] = 0;
    else
        snprintf(out, 8, "s%u", i);
}

static int find_model(const server_model *m, const pg_stmt *s)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->mru[i] == s)
            return (int)i;
    return -1;
}

static void model_drop(server_model *m, size_t i)
{
    memmove(&m->mru[i], &m->mru[i + 1], (m->n - i - 1) * sizeof m->mru[0]);
    memmove(&m->pending[i], &m->pending[i + 1], (m->n - i - 1) * sizeof m->pending[0]);
    m->n--;
}

static void model_to_front(server_model *m, size_t i)
{
    pg_stmt *s = m->mru[i];
    uint64_t seq = m->pending[i];
    model_drop(m, i);
    memmove(&m->mru[1], &m->mru[0], m->n * sizeof m->mru[0]);
    memmove(&m->pending[1], &m->pending[0], m->n * sizeof m->pending[0]);
    m->mru[0] = s;
    m->pending[0] = seq;
    m->n++;
}

static void server_add(world *w, server_model *m, pg_stmt *s, uint64_t seq)
{
    int err, at = find_model(m, s);
    pg_stmt *victim = pg_server_stmts_add(&m->set, s, m->max, seq, &err);
    FUZZ_CHECK(err == 0);
    if (at >= 0) {
        /* already there: only marked used, its pending request unchanged */
        FUZZ_CHECK(victim == NULL);
        model_to_front(m, (size_t)at);
        return;
    }
    memmove(&m->mru[1], &m->mru[0], m->n * sizeof m->mru[0]);
    memmove(&m->pending[1], &m->pending[0], m->n * sizeof m->pending[0]);
    m->mru[0] = s;
    m->pending[0] = seq;
    m->n++;
    if (m->max > 0 && m->n > (size_t)m->max) {
        FUZZ_CHECK(victim == m->mru[m->n - 1] && victim != s);
        m->n--;
        pg_stmt_unref(&w->reg, victim); /* the caller would Close it on the server */
    } else {
        FUZZ_CHECK(victim == NULL);
    }
}

static void step(world *w, input *in)
{
    uint8_t op = take(in);
    size_t hi = take(in) % N_HELD;
    pg_stmt *h = w->held[hi];
    pg_client_stmts *cm = &w->clients[op >> 4 & 1];
    pg_stmt **bound = w->bound[op >> 4 & 1];
    server_model *sm = &w->servers[op >> 5 & 1];
    char name[8];

    switch (op & 15) {
    case 0:
    case 1: { /* a Parse arrives: intern its body and hold it as a request */
        size_t len = take(in) % 24, slot = take(in) % N_HELD;
        uint8_t body[24] = {0};
        for (size_t i = 0; i < len; i++)
            body[i] = take(in);
        pg_stmt *before = pg_stmt_lookup(&w->reg, body, len);
        pg_stmt *s = pg_stmt_intern(&w->reg, body, len);
        FUZZ_CHECK(s && (!before || before == s));
        FUZZ_CHECK(s->body_len == len && memcmp(s->body, body, len) == 0);
        FUZZ_CHECK(pg_stmt_lookup(&w->reg, body, len) == s);
        FUZZ_CHECK(strncmp(s->name, "sluice_", 7) == 0);
        if (w->held[slot])
            pg_stmt_unref(&w->reg, w->held[slot]);
        w->held[slot] = s;
        break;
    }
    case 2: /* the request completes */
        if (h)
            pg_stmt_unref(&w->reg, h);
        w->held[hi] = NULL;
        break;
    case 3: { /* the client names it */
        unsigned i = take(in) % N_NAMES;
        if (!h)
            break;
        name_of(name, i);
        FUZZ_CHECK(pg_client_stmts_bind(cm, &w->reg, name, h) == 0);
        bound[i] = h;
        break;
    }
    case 4: { /* Close of a name */
        unsigned i = take(in) % N_NAMES;
        name_of(name, i);
        FUZZ_CHECK(pg_client_stmts_unbind(cm, &w->reg, name) == (bound[i] != NULL));
        bound[i] = NULL;
        break;
    }
    case 5: /* a Parse of it failed */
        if (!h)
            break;
        pg_client_stmts_unbind_stmt(cm, &w->reg, h);
        for (unsigned i = 0; i < N_NAMES; i++)
            if (bound[i] == h)
                bound[i] = NULL;
        break;
    case 6: /* Bind/Describe by name */
        for (unsigned i = 0; i < N_NAMES; i++) {
            name_of(name, i);
            FUZZ_CHECK(pg_client_stmts_find(cm, name) == bound[i]);
        }
        break;
    case 7:
        pg_client_stmts_clear(cm, &w->reg);
        pg_client_stmts_init(cm);
        memset(bound, 0, N_NAMES * sizeof *bound);
        break;
    case 8: /* sent to a server */
        if (h)
            server_add(w, sm, h, take(in) % 4);
        break;
    case 9: { /* used on a server */
        int at = h ? find_model(sm, h) : -1;
        if (!h)
            break;
        FUZZ_CHECK(pg_server_stmts_use(&sm->set, h) == (at >= 0));
        if (at >= 0)
            model_to_front(sm, (size_t)at);
        break;
    }
    case 10: { /* ParseComplete / ParseError / a request number */
        int at = h ? find_model(sm, h) : -1;
        if (!h)
            break;
        FUZZ_CHECK(pg_server_stmts_pending(&sm->set, h) == (at >= 0 ? sm->pending[at] : 0));
        uint8_t how = take(in) % 3;
        if (how == 0) {
            pg_server_stmts_confirm(&sm->set, h);
            if (at >= 0)
                sm->pending[at] = 0;
        } else if (how == 1) {
            FUZZ_CHECK(pg_server_stmts_remove(&sm->set, &w->reg, h) == (at >= 0));
            if (at >= 0)
                model_drop(sm, (size_t)at);
        } else {
            uint64_t seq = take(in);
            pg_server_stmts_set_pending(&sm->set, h, seq);
            if (at >= 0)
                sm->pending[at] = seq;
        }
        break;
    }
    case 11: /* the server connection closes */
        pg_server_stmts_clear(&sm->set, &w->reg);
        pg_server_stmts_init(&sm->set);
        sm->n = 0;
        break;
    default: /* every answer of every set */
        for (size_t i = 0; i < sm->n; i++)
            FUZZ_CHECK(pg_server_stmts_pending(&sm->set, sm->mru[i]) == sm->pending[i]);
        break;
    }
    size_t names = 0;
    for (unsigned i = 0; i < N_NAMES; i++)
        names += bound[i] != NULL;
    FUZZ_CHECK(pg_client_stmts_count(cm) == names);
    FUZZ_CHECK(pg_server_stmts_count(&sm->set) == sm->n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static world w; /* large; fully reset below */
    input in = {data, size, 0};
    memset(&w, 0, sizeof w);
    pg_stmt_registry_init(&w.reg);
    for (int i = 0; i < N_CLIENTS; i++)
        pg_client_stmts_init(&w.clients[i]);
    for (int i = 0; i < N_SERVERS; i++) {
        pg_server_stmts_init(&w.servers[i].set);
        w.servers[i].max = take(&in) % 5; /* 0: no cap */
    }
    for (int ops = 0; in.pos < in.len && ops < MAX_OPS; ops++)
        step(&w, &in);

    for (int i = 0; i < N_CLIENTS; i++)
        pg_client_stmts_clear(&w.clients[i], &w.reg);
    for (int i = 0; i < N_SERVERS; i++)
        pg_server_stmts_clear(&w.servers[i].set, &w.reg);
    for (int i = 0; i < N_HELD; i++)
        if (w.held[i])
            pg_stmt_unref(&w.reg, w.held[i]);
    FUZZ_CHECK(w.reg.table.count == 0);
    pg_stmt_registry_destroy(&w.reg);
    return 0;
}
