/*
 * mongo_load: a MongoDB load generator on libmongoc, driven by bench/run.
 *
 * Each of N threads owns a single-threaded mongoc_client_t, as N application processes would.
 * Every thread connects and pings before the clock starts, so connection set-up is not part of
 * the figures; then all run one kind of operation for a duration or a number of operations each.
 * Latencies go into a per-thread log-linear histogram, so memory stays bounded however long the
 * run. The merged result is one JSON object on stdout:
 *
 *   {"op": "find", "clients": 10, "ops": 1234, "errors": 0, "seconds": 2.001,
 *    "throughput": 616.7, "mean_us": 905.2, "p50_us": 812, "p95_us": 1530, "p99_us": 2210,
 *    "max_us": 9800, "last_error": ""}
 *
 * usage: mongo_load --uri URI [--clients N] [--seconds S | --count N] [--op OP] [--docs D]
 *        mongo_load --uri URI --prepare [--docs D]
 *
 * OP is find (one document by _id), insert (insert_one), insert_many (batches of 1,000) or scan
 * (a cursor over all D prepared documents, 100 per batch, so each scan issues getMores).
 * --prepare (re)creates the D documents that find and scan read. Exit status 0 whenever the run
 * itself completed; failed operations are counted in "errors", not in the exit status.
 */
#include <getopt.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DB_NAME       "sluice_bench"
#define READ_COLL     "docs"
#define WRITE_COLL    "writes"
#define BATCH_DOCS    1000
#define SCAN_BATCH    100
#define ERROR_TEXT_SZ 600 /* room for "what: " and a whole bson_error_t message */

/*
 * Histogram of microseconds: values below 2^SUB_BITS have a bucket each; above, every power of
 * two is split into 2^SUB_BITS buckets, so a bucket is at most 1/64 (1.6 %) of its value wide.
 * Values up to 2^MAX_BITS us (19 hours) fit; larger ones land in the last bucket.
 */
#define SUB_BITS  6
#define SUB_COUNT (1u << SUB_BITS)
#define MAX_BITS  36
#define N_BUCKETS (SUB_COUNT * (MAX_BITS - SUB_BITS + 1))

typedef struct histogram {
    uint64_t count[N_BUCKETS];
    uint64_t total;
    uint64_t sum_us; /* for the mean, which the buckets would round */
    uint64_t max;
} histogram;

typedef enum op_kind {
    OP_FIND,        /* find_with_opts on {_id: random prepared id}, expects one document */
    OP_INSERT,      /* insert_one of a small document */
    OP_INSERT_MANY, /* insert_many of BATCH_DOCS small documents */
    OP_SCAN,        /* a cursor over every prepared document, SCAN_BATCH per reply */
} op_kind;

static const char *const op_names[] = {"find", "insert", "insert_many", "scan"};

typedef struct worker {
    pthread_t thread;
    int id;
    /* read-only run parameters, shared by every worker */
    const char *uri;
    op_kind op;
    int docs;
    double seconds; /* used when count is 0 */
    long count;
    pthread_barrier_t *start;
    /* results, read by main after join */
    long ops, errors;
    histogram *hist;
    char last_error[ERROR_TEXT_SZ];
} worker;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned bucket_of(uint64_t us)
{
    if (us < SUB_COUNT)
        return (unsigned)us;
    unsigned msb = 63u - (unsigned)__builtin_clzll(us);
    if (msb >= MAX_BITS)
        return N_BUCKETS - 1;
    unsigned shift = msb - SUB_BITS; /* us >> shift lies in [SUB_COUNT, 2 * SUB_COUNT) */
    return SUB_COUNT * (shift + 1) + (unsigned)((us >> shift) - SUB_COUNT);
}

/* The middle of a bucket: what a percentile falling into it reports. */
static uint64_t bucket_value(unsigned b)
{
    if (b < SUB_COUNT)
        return b;
    unsigned shift = b / SUB_COUNT - 1;
    uint64_t low = (uint64_t)(b % SUB_COUNT + SUB_COUNT) << shift;
    return low + ((1ull << shift) >> 1);
}

static void hist_record(histogram *h, uint64_t us)
{
    h->count[bucket_of(us)]++;
    h->total++;
    h->sum_us += us;
    if (us > h->max)
        h->max = us;
}

static void hist_merge(histogram *into, const histogram *from)
{
    for (unsigned i = 0; i < N_BUCKETS; i++)
        into->count[i] += from->count[i];
    into->total += from->total;
    into->sum_us += from->sum_us;
    if (from->max > into->max)
        into->max = from->max;
}

/* Nearest-rank percentile, p in (0, 1]; 0 for an empty histogram. */
static uint64_t hist_percentile(const histogram *h, double p)
{
    if (!h->total)
        return 0;
    uint64_t rank = (uint64_t)(p * (double)h->total + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < N_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank)
            return bucket_value(i) < h->max ? bucket_value(i) : h->max;
    }
    return h->max;
}

/*
 * Prepared document i has the ObjectId 00..00 plus i: a find can name it without
 * a lookup table. ObjectIds rather than integers because that is what applications mostly use,
 * and the test server only indexes ObjectId _ids.
 */
static void append_doc_id(bson_t *doc, uint32_t i)
{
    uint8_t raw[12] = {0};
    raw[8] = (uint8_t)(i >> 24);
    raw[9] = (uint8_t)(i >> 16);
    raw[10] = (uint8_t)(i >> 8);
    raw[11] = (uint8_t)i;
    bson_oid_t oid;
    bson_oid_init_from_data(&oid, raw);
    BSON_APPEND_OID(doc, "_id", &oid);
}

static void set_error(worker *w, const char *what, const bson_error_t *err)
{
    w->errors++;
    snprintf(w->last_error, sizeof w->last_error, "%.60s%s%s", what, err ? ": " : "",
             err ? err->message : "");
}

/* One operation; false (with w->last_error set) when it failed. */
static bool run_once(worker *w, mongoc_collection_t *coll, unsigned *seed, const bson_t **batch,
                     const bson_t *one)
{
    bson_error_t err;
    if (w->op == OP_INSERT) {
        if (!mongoc_collection_insert_one(coll, one, NULL, NULL, &err)) {
            set_error(w, "insert_one", &err);
            return false;
        }
        return true;
    }
    if (w->op == OP_INSERT_MANY) {
        if (!mongoc_collection_insert_many(coll, batch, BATCH_DOCS, NULL, NULL, &err)) {
            set_error(w, "insert_many", &err);
            return false;
        }
        return true;
    }

    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    if (w->op == OP_FIND)
        append_doc_id(&filter, (uint32_t)(rand_r(seed) % (unsigned)w->docs));
    else
        BSON_APPEND_INT32(&opts, "batchSize", SCAN_BATCH);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    const bson_t *doc;
    long n = 0;
    while (mongoc_cursor_next(cur, &doc))
        n++;
    bool ok = !mongoc_cursor_error(cur, &err);
    mongoc_cursor_destroy(cur);
    bson_destroy(&filter);
    bson_destroy(&opts);
    if (!ok) {
        set_error(w, w->op == OP_FIND ? "find" : "scan", &err);
        return false;
    }
    /* A short answer through a proxy is a failure even when no error was reported. */
    long want = w->op == OP_FIND ? 1 : w->docs;
    if (n != want) {
        w->errors++;
        snprintf(w->last_error, sizeof w->last_error, "%s returned %ld documents, expected %ld",
                 op_names[w->op], n, want);
        return false;
    }
    return true;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    bson_error_t err;
    bool ready = false;
    mongoc_collection_t *coll = NULL;
    bson_t one = BSON_INITIALIZER;
    bson_t *docs = NULL;
    const bson_t **batch = NULL;

    mongoc_client_t *c = mongoc_client_new(w->uri);
    if (!c) {
        set_error(w, "invalid URI", NULL);
    } else {
        mongoc_client_set_error_api(c, MONGOC_ERROR_API_VERSION_2);
        mongoc_client_set_appname(c, "sluice-bench");
        bson_t ping = BSON_INITIALIZER;
        BSON_APPEND_INT32(&ping, "ping", 1);
        ready = mongoc_client_command_simple(c, "admin", &ping, NULL, NULL, &err);
        bson_destroy(&ping);
        if (!ready)
            set_error(w, "connect", &err);
    }
    if (ready) {
        /* Reads use the prepared documents; writes go elsewhere so scans keep their size. */
        bool reads = w->op == OP_FIND || w->op == OP_SCAN;
        coll = mongoc_client_get_collection(c, DB_NAME, reads ? READ_COLL : WRITE_COLL);
        /* Documents are built once: without an _id, the driver adds a fresh one per insert. */
        BSON_APPEND_INT32(&one, "w", w->id);
        BSON_APPEND_UTF8(&one, "pad", "sluice benchmark document");
        if (w->op == OP_INSERT_MANY) {
            docs = calloc(BATCH_DOCS, sizeof *docs);
            batch = calloc(BATCH_DOCS, sizeof *batch);
            if (!docs || !batch) {
                set_error(w, "out of memory", NULL);
                ready = false;
            }
            for (int i = 0; ready && i < BATCH_DOCS; i++) {
                bson_init(&docs[i]);
                BSON_APPEND_INT32(&docs[i], "w", w->id);
                BSON_APPEND_INT32(&docs[i], "i", i);
                batch[i] = &docs[i];
            }
        }
    }

    /* Every thread reaches the barrier, ready or not, or the others would wait for ever. */
    pthread_barrier_wait(w->start);

    if (ready) {
        unsigned seed = (unsigned)w->id * 7919u + 1u;
        uint64_t end = now_ns() + (uint64_t)(w->seconds * 1e9);
        for (long i = 0; w->count ? i < w->count : now_ns() < end; i++) {
            uint64_t t0 = now_ns();
            if (run_once(w, coll, &seed, batch, &one)) {
                w->ops++;
                hist_record(w->hist, (now_ns() - t0) / 1000u);
            }
        }
    }

    if (docs) {
        for (int i = 0; i < BATCH_DOCS; i++)
            bson_destroy(&docs[i]);
    }
    free(docs);
    free(batch);
    bson_destroy(&one);
    if (coll)
        mongoc_collection_destroy(coll);
    if (c)
        mongoc_client_destroy(c);
    return NULL;
}

/* (Re)creates the documents that find and scan read, _id numbered 0 .. docs - 1. */
static int prepare(const char *uri, int docs)
{
    mongoc_client_t *c = mongoc_client_new(uri);
    if (!c) {
        fprintf(stderr, "mongo_load: invalid URI\n");
        return -1;
    }
    mongoc_client_set_error_api(c, MONGOC_ERROR_API_VERSION_2);
    mongoc_collection_t *coll = mongoc_client_get_collection(c, DB_NAME, READ_COLL);
    bson_error_t err;
    mongoc_collection_drop(coll, NULL); /* fails harmlessly when it does not exist yet */
    bson_t *all = calloc((size_t)docs, sizeof *all);
    const bson_t **ptrs = calloc((size_t)docs, sizeof *ptrs);
    bool ok = all && ptrs;
    for (int i = 0; ok && i < docs; i++) {
        bson_init(&all[i]);
        append_doc_id(&all[i], (uint32_t)i);
        BSON_APPEND_UTF8(&all[i], "pad", "sluice benchmark document");
        ptrs[i] = &all[i];
    }
    if (ok) {
        ok = mongoc_collection_insert_many(coll, ptrs, (size_t)docs, NULL, NULL, &err);
        if (!ok)
            fprintf(stderr, "mongo_load: prepare: %s\n", err.message);
        for (int i = 0; i < docs; i++)
            bson_destroy(&all[i]);
    }
    free(all);
    free(ptrs);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(c);
    return ok ? 0 : -1;
}

/* Empties the write collection so every insert run starts from the same size. */
static void drop_writes(const char *uri)
{
    mongoc_client_t *c = mongoc_client_new(uri);
    if (!c)
        return; /* the workers report the bad URI */
    mongoc_collection_t *coll = mongoc_client_get_collection(c, DB_NAME, WRITE_COLL);
    mongoc_collection_drop(coll, NULL);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(c);
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static int usage(void)
{
    fprintf(stderr, "usage: mongo_load --uri URI [--clients N] [--seconds S | --count N]\n"
                    "                  [--op find|insert|insert_many|scan] [--docs D]\n"
                    "       mongo_load --uri URI --prepare [--docs D]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *uri = NULL;
    int clients = 10, docs = 1000, op = OP_FIND;
    double seconds = 5;
    long count = 0;
    bool do_prepare = false;
    static const struct option longopts[] = {
        {"uri", required_argument, NULL, 'u'},     {"clients", required_argument, NULL, 'c'},
        {"seconds", required_argument, NULL, 's'}, {"count", required_argument, NULL, 'n'},
        {"op", required_argument, NULL, 'o'},      {"docs", required_argument, NULL, 'd'},
        {"prepare", no_argument, NULL, 'p'},       {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "u:c:s:n:o:d:p", longopts, NULL)) != -1) {
        switch (o) {
        case 'u':
            uri = optarg;
            break;
        case 'c':
            clients = atoi(optarg);
            break;
        case 's':
            seconds = atof(optarg);
            break;
        case 'n':
            count = atol(optarg);
            break;
        case 'o':
            op = -1;
            for (int i = 0; i < (int)(sizeof op_names / sizeof op_names[0]); i++) {
                if (strcmp(optarg, op_names[i]) == 0)
                    op = i;
            }
            break;
        case 'd':
            docs = atoi(optarg);
            break;
        case 'p':
            do_prepare = true;
            break;
        default:
            return usage();
        }
    }
    if (!uri || clients < 1 || docs < 1 || op < 0 || count < 0 || (!count && seconds <= 0))
        return usage();

    mongoc_init();
    if (do_prepare) {
        int rc = prepare(uri, docs);
        mongoc_cleanup();
        return rc == 0 ? 0 : 1;
    }
    if (op == OP_INSERT || op == OP_INSERT_MANY)
        drop_writes(uri);

    worker *w = calloc((size_t)clients, sizeof *w);
    histogram *all = calloc(1, sizeof *all);
    pthread_barrier_t start;
    if (!w || !all || pthread_barrier_init(&start, NULL, (unsigned)clients + 1) != 0) {
        fprintf(stderr, "mongo_load: out of memory\n");
        return 1;
    }
    for (int i = 0; i < clients; i++) {
        w[i] = (worker){.id = i,
                        .uri = uri,
                        .op = (op_kind)op,
                        .docs = docs,
                        .seconds = seconds,
                        .count = count,
                        .start = &start,
                        .hist = calloc(1, sizeof(histogram))};
        if (!w[i].hist || pthread_create(&w[i].thread, NULL, worker_main, &w[i]) != 0) {
            /* The barrier counts on every thread: without them all, no run is possible. */
            fprintf(stderr, "mongo_load: cannot start client thread %d of %d\n", i + 1, clients);
            return 1;
        }
    }
    pthread_barrier_wait(&start);
    uint64_t t0 = now_ns();
    long ops = 0, errors = 0;
    const char *last_error = "";
    for (int i = 0; i < clients; i++) {
        pthread_join(w[i].thread, NULL);
        ops += w[i].ops;
        errors += w[i].errors;
        hist_merge(all, w[i].hist);
        if (w[i].errors)
            last_error = w[i].last_error;
    }
    double elapsed = (double)(now_ns() - t0) / 1e9;

    printf("{\"op\": \"%s\", \"clients\": %d, \"ops\": %ld, \"errors\": %ld, \"seconds\": %.3f, "
           "\"throughput\": %.1f, \"mean_us\": %.1f, \"p50_us\": %llu, \"p95_us\": %llu, "
           "\"p99_us\": %llu, \"max_us\": %llu, \"last_error\": ",
           op_names[op], clients, ops, errors, elapsed, elapsed > 0 ? (double)ops / elapsed : 0,
           all->total ? (double)all->sum_us / (double)all->total : 0.0,
           (unsigned long long)hist_percentile(all, 0.50),
           (unsigned long long)hist_percentile(all, 0.95),
           (unsigned long long)hist_percentile(all, 0.99), (unsigned long long)all->max);
    print_json_string(last_error);
    printf("}\n");

    for (int i = 0; i < clients; i++)
        free(w[i].hist);
    free(w);
    free(all);
    pthread_barrier_destroy(&start);
    mongoc_cleanup();
    return 0;
}
