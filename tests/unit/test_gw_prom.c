/* Unit tests for the Prometheus text format writer: escaping and histogram samples. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/prom.h"

static char *out;
static size_t out_len;

static FILE *open_out(void)
{
    FILE *f = open_memstream(&out, &out_len);
    cr_assert_not_null(f);
    return f;
}

static void check_out(FILE *f, const char *want)
{
    fclose(f);
    cr_assert_str_eq(out, want);
    free(out);
}

Test(gw_prom, family_header_escapes_help)
{
    FILE *f = open_out();
    gw_prom_family(f, "sluice_x", "gauge", "a \\ b\nc \"q\"");
    check_out(f, "# HELP sluice_x a \\\\ b\\nc \"q\"\n# TYPE sluice_x gauge\n");
}

Test(gw_prom, label_values_cannot_forge_samples)
{
    FILE *f = open_out();
    gw_prom_label l[] = {{"database", "a\"} 1\nsluice_evil{x=\"y"}, {"user", "b\\"}};
    gw_prom_u64(f, "sluice_c_total", l, 2, 7);
    check_out(f, "sluice_c_total{database=\"a\\\"} 1\\nsluice_evil{x=\\\"y\",user=\"b\\\\\"} 7\n");
}

Test(gw_prom, malformed_utf8_becomes_the_replacement_character)
{
    FILE *f = open_out();
    /* a lone continuation byte, an overlong '/', a surrogate, then valid é and 😀 */
    gw_prom_label l[] = {{"database", "\x80x\xc0\xaf\xed\xa0\x80\xc3\xa9\xf0\x9f\x98\x80"}};
    gw_prom_u64(f, "m", l, 1, 1);
    check_out(f, "m{database=\"\xef\xbf\xbdx\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                 "\xef\xbf\xbd\xc3\xa9\xf0\x9f\x98\x80\"} 1\n");
}

Test(gw_prom, doubles_read_back_and_special_values)
{
    FILE *f = open_out();
    gw_prom_double(f, "a", NULL, 0, 0.1);
    gw_prom_double(f, "b", NULL, 0, 1.0 / 3);
    gw_prom_double(f, "c", NULL, 0, __builtin_inf());
    gw_prom_double(f, "d", NULL, 0, __builtin_nan(""));
    check_out(f, "a 0.1\nb 0.33333333333333331\nc +Inf\nd NaN\n");
}

Test(gw_prom, histogram_has_every_bucket_then_sum_and_count)
{
    FILE *f = open_out();
    gw_prom_label l[] = {{"database", "db"}};
    const double bounds[] = {0.001, 0.5};
    const uint64_t cum[] = {2, 2};
    gw_prom_histogram(f, "h_seconds", l, 1, bounds, cum, 2, 5, 12.25);
    check_out(f, "h_seconds_bucket{database=\"db\",le=\"0.001\"} 2\n"
                 "h_seconds_bucket{database=\"db\",le=\"0.5\"} 2\n"
                 "h_seconds_bucket{database=\"db\",le=\"+Inf\"} 5\n"
                 "h_seconds_sum{database=\"db\"} 12.25\n"
                 "h_seconds_count{database=\"db\"} 5\n");
}
