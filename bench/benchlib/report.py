"""What is written: the machine and versions, report.md and the gnuplot charts."""
import math
import os
import platform
import re
import shutil
import subprocess

from . import budget, versus

TARGET_ORDER = ("direct", "relay", "pgbouncer", "sluice")
# A target keeps its colour on every chart, whichever targets a chart leaves out.
TARGET_COLOUR = {"direct": "#555555", "relay": "#2ca02c", "pgbouncer": "#1f77b4",
                 "sluice": "#d62728"}


def _first_line(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (p.stdout or p.stderr).strip().split("\n")[0] or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"


def machine():
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    distro = platform.system()
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as f:
            m = re.search(r'^PRETTY_NAME="?([^"\n]*)', f.read(), re.M)
            distro = m.group(1) if m else distro
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            autogroup = f.read().strip() == "1"
    except OSError:
        autogroup = None  # a kernel without it
    return {"cpu": cpu, "nproc": len(os.sched_getaffinity(0)), "cpus_online": os.cpu_count(),
            "memory_bytes": mem, "kernel": platform.release(), "os": distro,
            "arch": platform.machine(), "load_average_at_start": os.getloadavg(),
            "sched_autogroup": autogroup}


def versions(root, pg, sluice_bin, pgbouncer_present, mongo_used):
    v = {"pgbench": _first_line(["pgbench", "--version"])}
    try:
        v["PostgreSQL"] = pg.version() if pg else "not used"
    except Exception as e:  # noqa: BLE001 - versions are informative, never fatal
        v["PostgreSQL"] = f"unknown ({e})"
    v["PgBouncer"] = _first_line(["pgbouncer", "--version"]) if pgbouncer_present \
        else "not installed"
    rev = _first_line(["git", "-C", root, "describe", "--always", "--dirty", "--abbrev=12"])
    v["Sluice"] = f"{_first_line([sluice_bin, '--version'])}, git {rev}" \
        if os.access(sluice_bin, os.X_OK) else f"not built, git {rev}"
    if mongo_used:
        v["libmongoc (mongo_load)"] = _first_line(["pkg-config", "--modversion",
                                                   "libmongoc-1.0"])
        v["MongoDB-wire server"] = mongo_server_version(root)
    v["gnuplot"] = _first_line(["gnuplot", "--version"])
    v["Python"] = platform.python_version()
    return v


def mongo_server_version(root):
    try:
        with open(os.path.join(root, "tests", "mongo_server", "install")) as f:
            m = re.search(r"smartmongo@([\w.]+)", f.read())
        node = _first_line(["node", "--version"])
        return f"CongoDB (@push.rocks/smartmongo {m.group(1) if m else '?'}), node {node}"
    except OSError:
        return "external"


# ---- report.md ----

def _num(v, digits=0):
    return "-" if v is None else f"{v:,.{digits}f}"


def _ratio(r, base):
    if not base or r["errors"] or base["errors"] or not base["throughput"]:
        return "-"
    return f"{r['throughput'] / base['throughput']:.2f}x"


def _errors_cell(r):
    if not r["errors"]:
        return "0"
    what = f"{r['aborted_clients']} aborted clients" if r.get("aborted_clients") \
        else str(r["errors"])
    return what + (" (expected)" if r.get("expected_failure") else "")


def _conns_cell(r):
    held = r.get("server_conns")
    return "-" if held is None else str(held)


def group_order(results):
    return list(dict.fromkeys(r["group"] for r in results))


def context(meta):
    """The machine and every version: what any figure depends on."""
    m = meta["machine"]
    lines = ["## Machine", "",
             f"- {m['cpu']}, {m['nproc']} CPUs usable ({m['cpus_online']} online), "
             f"{m['memory_bytes'] / 2**30:.1f} GiB memory, {m['arch']}",
             f"- {m['os']}, Linux {m['kernel']}; load average at start "
             + ", ".join(f"{x:.2f}" for x in m["load_average_at_start"]),
             "- everything (clients, poolers, servers) on this one machine, over loopback; "
             "each pooler and server in a session of its own, as a service runs"
             + {True: " (autogroup scheduling is on: each session has its own CPU share)",
                False: " (autogroup scheduling is off)"}.get(m.get("sched_autogroup"), ""),
             ""]
    return lines + ["## Versions", ""] + [f"- {k}: {v}" for k, v in meta["versions"].items()] \
        + [""]


def warm_up_note(meta):
    """How the poolers' server connections were warmed before the rounds (bench/run)."""
    secs = meta.get("warm_up_seconds")
    if not secs:
        return (" The poolers were not warmed up first: their first runs include fresh server "
                "connections warming up.")
    return (f" Before a timed scenario's first round each pooler ran it unmeasured for {secs} s, "
            "so its server connections are warm (a fresh backend is slow until it has touched "
            "the pages it needs); direct opens fresh connections in every run, and its figures "
            "include that warm-up.")


def write_report(path, results, meta):
    lines = ["# Sluice benchmark: pooled versus direct", "",
             f"{meta['date']}, {meta['mode']} run, {meta['rounds']} round(s), "
             f"{meta.get('scenario_minutes', 0)} minutes of scenarios. In each round every "
             "scenario runs against every target in turn (interleaved), so drift on the machine "
             "hits all targets alike; each figure below is the target's best error-free round, "
             "and *spread* is how far its rounds' throughputs lie apart."
             + warm_up_note(meta), ""]
    lines += context(meta)
    lines += ["## Targets", ""]
    if meta.get("postgres_settings"):
        lines.append(f"- PostgreSQL: {meta['postgres_settings']}; pgbench scale "
                     f"{meta['pgbench_scale']}.")
    lines += ["- **direct**: the load generator connects to the server itself.",
              "- **relay**: `bench/floor_relay`, on the 1-client scenarios and MongoDB insert_one "
              "at 50 clients: bytes forwarded unread, one server connection per client, one "
              "read and one write per batch. No proxy forwards with less; see *The floor*.",
              f"- **pgbouncer**: PgBouncer, transaction mode, default_pool_size "
              f"{meta['pool_size']}.",
              f"- **sluice**: Sluice, transaction mode, default_pool_size {meta['pool_size']}; "
              "MongoDB pool_size 10."]
    if any(r["group"] == "logins" for r in results):
        lines.append(
            "- **logins**: `pgbench -C -S`, a new connection per transaction, each proving its "
            "password. Every target has its own role per auth_type, whose password the server "
            "keeps as a SCRAM verifier or an md5 hash and asks for (hba scram-sha-256 / md5) "
            "from 127.0.0.1; direct access logs in to the server with it. A second PgBouncer "
            "and a second Sluice per auth_type (`auth_type = scram-sha-256` / `md5`, otherwise "
            "configured as above) read one users file holding those secrets exactly as "
            "pg_authid stores them, and log in to the server as the client's user with them "
            "(SCRAM and md5 passthrough): neither pooler is given a plaintext password.")
    lines.append("")
    if meta.get("unavailable"):
        lines += ["## Not measured", ""]
        lines += [f"- **{k}**: {v}" for k, v in meta["unavailable"].items()] + [""]

    lines += summary(results)
    lines += versus.section(results, meta["rounds"])
    lines += budget.section(results)
    lines += floor_section(results)

    for g in group_order(results):
        rows = [r for r in results if r["group"] == g]
        vs_bouncer = {"pgbouncer", "sluice"} <= {r["target"] for r in rows}
        cols = ["scenario", "target", "throughput", "vs direct"] + \
            (["vs PgBouncer"] if vs_bouncer else []) + \
            ["mean ms", "p50 ms", "p95 ms", "p99 ms", "errors", "server conns", "pooler CPU s",
             "pooler CPU us/op", "pooler peak RSS MB", "spread"]
        lines += [f"## {g}", "", "| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
        for name in dict.fromkeys(r["name"] for r in rows):
            by = {r["target"]: r for r in rows if r["name"] == name}
            for t in TARGET_ORDER:
                r = by.get(t)
                if not r:
                    continue
                cells = [name, t, f"{_num(r['throughput'])} {r['unit']}",
                         _ratio(r, by.get("direct")) if t != "direct" else ""]
                if vs_bouncer:
                    cells.append(_ratio(r, by.get("pgbouncer")) if t == "sluice" else "")
                spread = r.get("spread_pct")
                cells += [_num(r.get("mean_ms"), 2), _num(r["p50_ms"], 2), _num(r["p95_ms"], 2),
                          _num(r["p99_ms"], 2), _errors_cell(r), _conns_cell(r), _num(r.get("cpu_s"), 2),
                          _num(r.get("cpu_us_per_op"), 1),
                          _num(r["peak_rss"] / 1e6, 1) if r.get("peak_rss") else "-",
                          f"{spread:.0f} %" if spread is not None else "-"]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")

    if meta.get("idle_rss"):
        lines += ["## Memory per idle client", "",
                  "Logged-in clients that send nothing, held by a freshly started pooler; its "
                  "RSS before and after they logged in.", "",
                  "| target | clients | RSS before MB | RSS after MB | bytes per client |",
                  "|---|---|---|---|---|"]
        for t, v in meta["idle_rss"].items():
            if "error" in v:
                lines.append(f"| {t} | {v['clients']:,} | - | - | failed: {v['error']} |")
            else:
                lines.append(f"| {t} | {v['clients']:,} | {v['rss_before'] / 1e6:.1f} | "
                             f"{v['rss_after'] / 1e6:.1f} | {v['bytes_per_client']:,} |")
        lines.append("")

    failed = [r for r in results if r["errors"]]
    if failed:
        lines += ["## Errors", ""]
        for r in failed:
            why = (r.get("error_text") or "").strip().splitlines() or ["(no message)"]
            note = f" (expected: {r['expected_failure']})" if r.get("expected_failure") else ""
            lines.append(f"- {r['name']} on {r['target']}: {why[0][:240]}{note}")
        lines.append("")

    reruns = [r for r in results if r.get("rerun")]
    if reruns:
        lines += ["## Reruns", ""]
        lines += [f"- {r['name']} on {r['target']}: {r['rerun']}" for r in reruns]
        lines.append("")

    if meta.get("charts"):
        lines += ["## Charts", ""] + [f"![{c}]({c})" for c in meta["charts"]] + [""]

    lines += ["## How the figures are taken", "",
              "- Throughput and latency come from the load generator: pgbench's own tps and its "
              "per-transaction log (`-l`), percentiles computed from every logged transaction; "
              "mongo_load's operation count and latency histogram (connection set-up excluded); "
              "for COPY, rows over psql's wall time. pgbench reads its clock lazily: a reply "
              "already waiting when a preempted pgbench thread looks counts as 0 us, so on a "
              "busy machine the shortest latencies read low.",
              "- Server connections: the most seen at once during the run, sampled every "
              f"{meta['pg_sample_interval']} s from pg_stat_activity (client backends of the "
              "target's own role) for PostgreSQL, and every "
              f"{meta['mongo_sample_interval']} s from `ss` (ESTABLISHED connections to the "
              "server's port owned by the target's process) for MongoDB. Short runs can slip "
              "between samples.",
              "- Pooler CPU: user + system time from /proc/PID/stat over the run; per op = that "
              "over the transactions, operations or (batch load) rows completed. Peak RSS: "
              "VmHWM, reset before each run.",
              "- Errors: failed transactions plus aborted clients (pgbench stops a client at its "
              "first error); for MongoDB, failed operations.",
              "- The exact commands and every round's figures are in results.json.", ""]
    write_lines(path, lines)


def floor_section(results):
    """Each scenario the relay ran: what each hop costs against direct and against the relay."""
    relayed = {r["name"] for r in results if r["target"] == "relay"}
    rows = [r for r in results if r["name"] in relayed]
    if not rows:
        return []
    lines = ["## The floor: what one hop costs", "",
             "The scenarios `bench/floor_relay` ran too, best round. The relay forwards bytes "
             "unread, one server connection per client: the least any proxy can do (two more "
             "wake-ups and four more system calls per round trip, nothing else). *Added* is the "
             "mean round trip minus direct's; *over the relay* is what a pooler adds beyond "
             "it, the part that is its own work rather than the cost of being a hop. For "
             "PostgreSQL, direct and the relay open fresh backends in every run, which are "
             "slower until they have touched the shared buffers they read; the poolers' server "
             "connections are warm, so their *added* reads low by that difference.", "",
             "| scenario | target | throughput vs direct | mean ms | added us "
             "| over the relay us | proxy CPU us/op |", "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["name"] for r in rows):
        by = {r["target"]: r for r in rows if r["name"] == name and not r["errors"]}

        def added(r, base):
            if not r or not base or r.get("mean_ms") is None or base.get("mean_ms") is None:
                return None
            return (r["mean_ms"] - base["mean_ms"]) * 1000

        for t in TARGET_ORDER:
            r = by.get(t)
            if not r:
                continue
            pooled = t not in ("direct", "relay")
            lines.append("| " + " | ".join([
                name, t, _ratio(r, by.get("direct")) if t != "direct" else "",
                _num(r.get("mean_ms"), 3),
                _num(added(r, by.get("direct")), 1) if t != "direct" else "",
                _num(added(r, by.get("relay")), 1) if pooled else "",
                _num(r.get("cpu_us_per_op"), 1) if t != "direct" else ""]) + " |")
    return lines + [""]


def write_lines(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines))


def summary(results):
    """Throughput of every scenario on one line per scenario, and Sluice's geometric-mean
    ratios against the others over the scenarios where both ran without errors."""
    names = list(dict.fromkeys(r["name"] for r in results))
    by = {(r["name"], r["target"]): r for r in results}
    lines = ["## Summary", "",
             "Throughput per scenario; ratios only where both sides ran without errors.", "",
             "| scenario | direct | PgBouncer | Sluice | Sluice vs direct | Sluice vs PgBouncer |",
             "|---|---|---|---|---|---|"]

    def tp(r):
        if not r:
            return "-"
        return f"{_num(r['throughput'])} {r['unit']}" + (" (errors)" if r["errors"] else "")

    ratios = {"direct": [], "pgbouncer": []}
    for name in names:
        d, b, s = (by.get((name, t)) for t in ("direct", "pgbouncer", "sluice"))
        lines.append(f"| {name} | {tp(d)} | {tp(b)} | {tp(s)} | {_ratio(s, d) if s else '-'} "
                     f"| {_ratio(s, b) if s else '-'} |")
        for key, other in (("direct", d), ("pgbouncer", b)):
            if s and other and not s["errors"] and not other["errors"] and other["throughput"]:
                ratios[key].append(s["throughput"] / other["throughput"])
    lines.append("")
    for key, label in (("direct", "direct access"), ("pgbouncer", "PgBouncer")):
        v = ratios[key]
        if v:
            gmean = math.exp(sum(math.log(x) for x in v) / len(v)) if all(v) else 0.0
            lines.append(f"Sluice against {label}: geometric mean {gmean:.2f}x over {len(v)} "
                         f"scenarios (from {min(v):.2f}x to {max(v):.2f}x).")
            lines.append("")
    return lines


# ---- charts ----

def chart_name(group):
    """pgbench -S -M simple -> pg_select_simple, mongo find -> mongo_find."""
    short = group.replace("pgbench -S -M", "pg select").replace("pgbench", "pg")
    return re.sub(r"[^a-z0-9]+", "_", short.lower()).strip("_")


def write_charts(out, results):
    """For every scenario group that spans several client counts: throughput and p99 latency
    against clients, one line per target. Runs with errors are left out: their figures do not
    describe the workload. Returns the PNG names written."""
    if not shutil.which("gnuplot"):
        return []
    made = []
    for g in group_order(results):
        every = [r for r in results if r["group"] == g]
        rows = [r for r in every if not r["errors"]]
        if len({r["clients"] for r in rows}) < 2:
            continue
        targets = [t for t in TARGET_ORDER if any(r["target"] == t for r in rows)]
        left_out = [t for t in TARGET_ORDER
                    if t not in targets and any(r["target"] == t for r in every)]
        note = (f"set label 'not drawn, every run failed: {', '.join(left_out)}' "
                "at graph 0.01, graph -0.17 font ',9'") if left_out else ""
        unit = rows[0]["unit"]
        clients = sorted({r["clients"] for r in rows})
        # Ticks at the client counts measured, and room either side of them.
        xaxis = (f"set xtics ({', '.join(str(c) for c in clients)})\n"
                 f"set xrange [{clients[0] * 0.8}:{clients[-1] * 1.25}]")
        for metric, label, ylog in (("throughput", f"throughput ({unit})", False),
                                    ("p99_ms", "p99 latency (ms)", True)):
            dat = os.path.join(out, f".{chart_name(g)}_{metric}.dat")
            with open(dat, "w") as f:
                for t in targets:
                    f.write(f"# {t}\n")
                    for r in sorted((r for r in rows if r["target"] == t),
                                    key=lambda r: r["clients"]):
                        if r.get(metric) is not None:
                            f.write(f"{r['clients']} {r[metric]}\n")
                    f.write("\n\n")
            png = f"{chart_name(g)}_{'throughput' if metric == 'throughput' else 'p99'}.png"
            plots = ", ".join(f"'{dat}' index {i} with linespoints lw 2 pt 7 "
                              f"lc rgb '{TARGET_COLOUR[t]}' title '{t}'"
                              for i, t in enumerate(targets))
            script = "\n".join([
                "set terminal pngcairo size 800,480 font 'sans,11'",
                f"set output '{os.path.join(out, png)}'",
                f"set title '{g}: {label} by client count'",
                "set xlabel 'clients (log scale)'", f"set ylabel '{label}'",
                "set logscale x", xaxis, "set grid", "set key outside right top",
                "set format y '%.0f'" if not ylog else "set format y '%g'",
                "set logscale y" if ylog else "set yrange [0:*]",
                "set bmargin 5", note, f"plot {plots}"])
            subprocess.run(["gnuplot"], input=script, text=True, check=True,
                           capture_output=True, timeout=60)
            os.unlink(dat)
            made.append(png)
    return made
