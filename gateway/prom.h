/*
 * gw_prom: writes the Prometheus text exposition format, version 0.0.4: `# HELP` and `# TYPE`
 * once per metric family, then one line per sample. Label values are escaped as the format
 * wants (backslash, double quote, line feed), so a database or user name chosen by a client
 * cannot forge samples.
 */
#ifndef SLUICE_GW_PROM_H
#define SLUICE_GW_PROM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define GW_PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef struct gw_prom_label {
    const char *name; /* a valid label name (a literal in our code) */
    const char *value;
} gw_prom_label;

/* A family's header; type is "counter", "gauge" or "histogram". */
void gw_prom_family(FILE *f, const char *name, const char *type, const char *help);

/* name{labels} value. */
void gw_prom_u64(FILE *f, const char *name, const gw_prom_label *labels, size_t n, uint64_t v);
void gw_prom_double(FILE *f, const char *name, const gw_prom_label *labels, size_t n, double v);

/* One histogram's samples: name_bucket{labels,le="bound"} for each bound and +Inf, name_sum
 * and name_count. cum[i] counts the observations <= bounds[i] (cumulative, as the format wants);
 * count is all of them. Bounds and sum in the unit of the name (seconds). */
void gw_prom_histogram(FILE *f, const char *name, const gw_prom_label *labels, size_t n,
                       const double *bounds, const uint64_t *cum, size_t nb, uint64_t count,
                       double sum);

#endif
