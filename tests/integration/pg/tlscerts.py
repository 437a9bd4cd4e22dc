"""TLS helpers for the TLS tests of both front ends: certificates made at test time with the
openssl CLI (a CA, make_ca, and certificates it signs, make_cert, for servers with
subjectAltNames and for clients, their CN a user), and a real client's first flight."""
import os
import ssl
import subprocess
import tempfile


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
            "-subj", f"/CN=Sluice test {name}", cwd=d)


def make_cert(d, name, ca, cn, san=None):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName = {san}\n" if san else "basicConstraints = CA:FALSE\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", ext, cwd=d)
    os.chmod(os.path.join(d, f"{name}.key"), 0o600)  # libpq refuses a readable key
    # Certificate and key in one file, as MongoDB's drivers take them (tlsCertificateKeyFile).
    with open(os.path.join(d, f"{name}.pem"), "w") as out:
        for part in (f"{name}.crt", f"{name}.key"):
            with open(os.path.join(d, part)) as f:
                out.write(f.read())
    os.chmod(os.path.join(d, f"{name}.pem"), 0o600)


def make_pki(prefix, users):
    """A directory of test certificates; returns name -> path. A CA (ca) and one nobody trusts
    (otherca); server and server2 for localhost and 127.0.0.1, wrongname for another host; a
    client certificate per user (CN the user), and stranger: the first user's CN from otherca."""
    d = tempfile.mkdtemp(prefix=prefix)
    make_ca(d, "ca")
    make_ca(d, "otherca")
    make_cert(d, "server", "ca", "localhost", "DNS:localhost,IP:127.0.0.1")
    make_cert(d, "server2", "ca", "localhost", "DNS:localhost,IP:127.0.0.1")
    make_cert(d, "wrongname", "ca", "wrong.example", "DNS:wrong.example")
    for user in users:
        make_cert(d, user, "ca", user)
    make_cert(d, "stranger", "otherca", users[0])  # the right CN from a CA nobody trusts
    return lambda name: os.path.join(d, name)


def client_hello():
    """The first flight of a real TLS client (its ClientHello), as bytes."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()
