/*
 * Fuzzes mongo_redact over arbitrary text (cut at its first NUL) and output sizes: the output is
 * always terminated inside the buffer, a redacted text redacts to itself, a text without
 * "mongodb" (in any case) in it comes out unchanged, and a short buffer gets a prefix of what a
 * large one gets (never bytes a large one would have masked).
 */
#include <ctype.h>
#include <string.h>

#include "drivers/mongo/mongo_redact.h"
#include "tests/fuzz/fuzz.h"

static bool mentions_mongodb(const char *text)
{
    for (const char *p = text; *p; p++) {
        size_t i = 0;
        while (i < 7 && tolower((unsigned char)p[i]) == "mongodb"[i])
            i++;
        if (i == 7)
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    /* The first byte picks a small output size, to exercise truncation. */
    size_t small = data[0] % 32 + 1;
    char *text = malloc(size);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = 0;
    size_t len = strlen(text), big = 4 * len + 16;

    char *out = malloc(big), *again = malloc(big), *cut = malloc(small);
    FUZZ_CHECK(out && again && cut);
    FUZZ_CHECK(mongo_redact(text, out, big) == out);
    FUZZ_CHECK(memchr(out, 0, big) != NULL);
    FUZZ_CHECK(mongo_redact(out, again, big) == again);
    FUZZ_CHECK(strcmp(out, again) == 0);
    if (!mentions_mongodb(text))
        FUZZ_CHECK(strcmp(out, text) == 0);

    FUZZ_CHECK(mongo_redact(text, cut, small) == cut);
    size_t cut_len = strlen(cut), out_len = strlen(out);
    FUZZ_CHECK(cut_len < small && cut_len == (out_len < small - 1 ? out_len : small - 1));
    FUZZ_CHECK(memcmp(cut, out, cut_len) == 0);
    free(text);
    free(out);
    free(again);
    free(cut);
    return 0;
}
