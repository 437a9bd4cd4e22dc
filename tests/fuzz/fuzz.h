/*
 * fuzz.h: the entry points a harness defines. libFuzzer calls them in fuzzing builds; replay.c
 * calls them in every other build, once per corpus file.
 */
#ifndef SLUICE_FUZZ_H
#define SLUICE_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Runs one input. Must not keep anything from it (no leaks, no state carried across calls that
 * would make a crash depend on earlier inputs). Returns 0. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of the code under test: a violation is a finding, reported as a crash. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
