/*
 * Fuzzes the hba file parser over arbitrary text (@file names resolve next to a file that does
 * not exist, so includes mostly fail, and only regular files are ever read); a file that loads
 * is matched against Unix-socket, IPv4, IPv6 and v4-mapped clients, with and without TLS.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "auth/auth.h"
#include "tests/fuzz/fuzz.h"

static void check(const auth_hba *h, const struct sockaddr *sa, bool tls, const char *db,
                  const char *user)
{
    const auth_hba_client c = {.addr = sa, .tls = tls, .database = db, .user = user};
    auth_method m = (auth_method)-1;
    int line = 0;
    const int rc = auth_hba_match(h, &c, &m, &line);
    FUZZ_CHECK(rc == 0 || rc == AUTH_FAIL);
    if (rc == 0)
        FUZZ_CHECK(line > 0 && m >= AUTH_M_TRUST && m <= AUTH_M_CERT);
    if (rc == 0 && !sa)
        FUZZ_CHECK(m != AUTH_M_CERT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *diag;
    if (!diag)
        diag = fopen("/dev/null", "w");
    auth_hba *h = (auth_hba *)1;
    const int rc =
        auth_hba_parse((const char *)data, size, "/nonexistent-fuzz-dir/hba.conf", &h, diag);
    FUZZ_CHECK(rc == 0 || rc == -1);
    FUZZ_CHECK(rc == 0 ? h != NULL : h == NULL);
    if (rc != 0)
        return 0;
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6}, mapped = {.sin6_family = AF_INET6};
    inet_pton(AF_INET, "10.1.2.3", &v4.sin_addr);
    inet_pton(AF_INET6, "2001:db8::1", &v6.sin6_addr);
    inet_pton(AF_INET6, "::ffff:10.1.2.3", &mapped.sin6_addr);
    static const char *const names[] = {"all", "alice", "app", "sameuser"};
    for (int tls = 0; tls < 2; tls++)
        for (size_t i = 0; i < 4; i++) {
            check(h, NULL, tls, names[i], names[(i + 1) % 4]);
            check(h, (struct sockaddr *)&v4, tls, names[i], names[i]);
            check(h, (struct sockaddr *)&v6, tls, names[i], names[(i + 2) % 4]);
            check(h, (struct sockaddr *)&mapped, tls, names[(i + 3) % 4], names[i]);
        }
    auth_hba_free(h);
    return 0;
}
