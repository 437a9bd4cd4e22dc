"""`meson install` into a scratch directory, then checks what an operator gets: the binary, the
service unit (with the installed paths), the account file, the example configuration, and both
manual pages, which must render without a single groff warning and between them document every
[sluice] key. systemd-analyze verifies the unit when it is available.

Usage: check_install.py BUILD_DIR SOURCE_DIR
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

build, source = sys.argv[1], sys.argv[2]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


dest = tempfile.mkdtemp(prefix="sluice-install-")
try:
    r = run(["meson", "install", "-C", build, "--no-rebuild", "--destdir", dest])
    if r.returncode != 0:
        sys.exit("meson install failed:\n" + r.stdout + r.stderr)
    prefix = run(["meson", "introspect", build, "--buildoptions"]).stdout
    prefix = re.search(r'"name": "prefix", "value": "([^"]*)"', prefix).group(1)
    root = dest + prefix
    files = {
        "binary": "bin/sluice",
        "unit": "lib/systemd/system/sluice.service",
        "account": "lib/sysusers.d/sluice.conf",
        "example config": "etc/sluice/sluice.example.ini",
        "sluice(1)": "share/man/man1/sluice.1",
        "sluice.ini(5)": "share/man/man5/sluice.ini.5",
    }
    for what, rel in files.items():
        check(os.path.isfile(os.path.join(root, rel)), f"{what} not installed at {rel}")
    check(os.access(os.path.join(root, "bin/sluice"), os.X_OK), "the binary is not executable")
    if failures:
        sys.exit("\n".join(failures))

    # The pages: groff's own warnings, and man's rendering.
    env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="100")
    for page in ("share/man/man1/sluice.1", "share/man/man5/sluice.ini.5"):
        path = os.path.join(root, page)
        r = run(["groff", "-ww", "-man", "-z", path])
        check(r.returncode == 0 and r.stderr == "", f"groff warns on {page}:\n{r.stderr}")
        r = run(["man", "-l", path], env=env)
        check(r.returncode == 0 and r.stderr == "" and "SEE ALSO" in r.stdout,
              f"man -l {page} fails or warns:\n{r.stderr}")

    # Every [sluice] key (config/README.md carries the key table, checked by the unit tests)
    # has its own entry in sluice.ini(5), and the installed page is the generator's output.
    with open(os.path.join(source, "config", "README.md")) as f:
        readme = f.read()
    section = readme[readme.index("## `[sluice]`"):readme.index("## `[databases]`")]
    keys = re.findall(r"^\| `([a-z_0-9]+)` \|", section, re.M)
    check(len(keys) > 30, f"only {len(keys)} keys found in config/README.md")
    with open(os.path.join(root, "share/man/man5/sluice.ini.5")) as f:
        page = f.read()
    for k in keys:
        check(f".TP\n.B {k}\n" in page, f"sluice.ini(5) lacks the key {k}")
    with open(os.path.join(root, "etc/sluice/sluice.example.ini")) as f:
        example = f.read()
    with open(os.path.join(source, "config", "sluice.example.ini")) as f:
        check(example == f.read(), "the installed example differs from config/sluice.example.ini")

    # The unit names the installed binary and the usual config path, and its settings hold.
    with open(os.path.join(root, "lib/systemd/system/sluice.service")) as f:
        unit = f.read()
    check(not re.search(r"@[A-Z]+@", unit), "a placeholder is left in the unit")
    for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "KillSignal=SIGTERM",
                 f"ExecStart={prefix}/bin/sluice --config {prefix}/etc/sluice/sluice.ini"):
        check(line in unit.splitlines(), f"the unit lacks {line}")
    m = re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M)
    check(m and 0 < int(m.group(1)) <= 600, "TimeoutStopSec is missing or unbounded")

    if not shutil.which("systemd-analyze"):
        print("SKIP systemd-analyze verify: systemd-analyze is not installed")
    else:
        # verify checks that ExecStart's binary and the Documentation= pages exist: point them
        # at the scratch install.
        scratch = os.path.join(dest, "verify")
        os.mkdir(scratch)
        with open(os.path.join(scratch, "sluice.service"), "w") as f:
            f.write(unit.replace(prefix + "/", root + "/"))
        r = run(["systemd-analyze", "verify", os.path.join(scratch, "sluice.service")],
                env=dict(os.environ, MANPATH=os.path.join(root, "share/man")))
        out = (r.stdout + r.stderr).strip()
        if r.returncode != 0 and re.search(r"System has not been booted|Failed to (connect|"
                                           r"initialize)|not found", out):
            print("SKIP systemd-analyze verify: no usable systemd here:\n" + out)
        else:
            check(r.returncode == 0 and out == "", f"systemd-analyze verify:\n{out}")
finally:
    shutil.rmtree(dest, ignore_errors=True)

if failures:
    sys.exit("\n".join(failures))
print("install: every file in place, pages clean, unit verified")
