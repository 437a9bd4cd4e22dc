/* Unit tests for mongo_redact: no password or secret option of a MongoDB URI survives it. */
#include <criterion/criterion.h>
#include <string.h>

#include "drivers/mongo/mongo_redact.h"

static const char *redact(const char *in)
{
    static char out[512];
    return mongo_redact(in, out, sizeof out);
}

Test(mongo_redact, password_of_a_uri)
{
    cr_assert_str_eq(redact("mongodb://user:s3cret@db1:27017,db2/?replicaSet=rs0"),
                     "mongodb://user:****@db1:27017,db2/?replicaSet=rs0");
    cr_assert_str_eq(redact("mongodb+srv://u:p%40ss@cluster.example.net/app"),
                     "mongodb+srv://u:****@cluster.example.net/app");
    cr_assert_str_eq(redact("MONGODB://u:pw@h"), "MONGODB://u:****@h", "schemes ignore case");
}

Test(mongo_redact, uris_inside_text)
{
    cr_assert_str_eq(redact("listening for mongodb://a:b@h/ (pool 3) and 'mongodb://c:d@i'"),
                     "listening for mongodb://a:****@h/ (pool 3) and 'mongodb://c:****@i'");
}

Test(mongo_redact, unescaped_at_in_password_hides_all_of_it)
{
    cr_assert_str_eq(redact("mongodb://u:p@ss@h:1/"), "mongodb://u:****@h:1/");
}

Test(mongo_redact, no_password_no_change)
{
    const char *same[] = {"mongodb://127.0.0.1:27017/?appname=sluice",
                          "mongodb://user@h/db",
                          "plain text: no uri here",
                          "",
                          "mongodb://",
                          NULL};
    for (int i = 0; same[i]; i++)
        cr_assert_str_eq(redact(same[i]), same[i]);
}

Test(mongo_redact, secret_options)
{
    cr_assert_str_eq(redact("mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties="
                            "AWS_SESSION_TOKEN:tok&tlsCertificateKeyFilePassword=pw;w=1"),
                     "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=****"
                     "&tlsCertificateKeyFilePassword=****;w=1");
}

Test(mongo_redact, output_is_bounded)
{
    char out[12];
    mongo_redact("mongodb://user:secret@host", out, sizeof out);
    cr_assert_str_eq(out, "mongodb://u");
    mongo_redact("mongodb://u:secret@host", out, 1);
    cr_assert_str_eq(out, "");
}
