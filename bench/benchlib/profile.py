"""--profile: what each pooler does per transaction, counted rather than timed. A fixed number of
transactions (pgbench -t, mongo_load --count) runs twice against each pooler: untraced, for its
CPU time (utime + stime from /proc/PID/stat), then under strace -c for its system calls. strace
stops the pooler at every call, so neither run's speed is reported."""
import os
import statistics

from . import procs, report, syscalls

# A pooler cannot do with fewer: per round trip it reads the client's batch, writes it to the
# server, reads the server's answer and writes it to the client; and it waits for the client and
# for the server, waits that the events of several clients can share.
RW_PER_ROUND_TRIP = 4
WAITS_PER_ROUND_TRIP = 2
WARM_UP_COUNT = 5  # transactions per client that open the pool's server connections first


def floor(sc):
    """The fewest system calls per transaction: reads and writes, plus the waits shared by
    sc.clients clients at best."""
    return sc.round_trips * (RW_PER_ROUND_TRIP + WAITS_PER_ROUND_TRIP / sc.clients)


def measure(bench, sc, target, workdir):
    """One round of one scenario on one pooler: the untraced run's CPU per transaction and the
    traced run's system calls per transaction, by kind."""
    pid = target.pooler.pid
    warm = bench.load(sc, target, count=WARM_UP_COUNT)
    if warm["errors"]:
        return {"errors": warm["errors"], "error_text": "warm-up: " + warm.get("error_text", "")}
    cpu0 = procs.cpu_seconds(pid)
    plain = bench.load(sc, target)
    cpu = procs.cpu_seconds(pid) - cpu0
    r = {"errors": plain["errors"], "transactions": plain["ops"], "command": plain["command"],
         "cpu_us_per_tx": round(cpu * 1e6 / plain["ops"], 1) if plain["ops"] else None,
         # A fixed amount of work on a shared machine: kept for the record, not a throughput.
         "untraced_seconds": plain["seconds"]}
    if plain["errors"]:
        r["error_text"] = plain.get("error_text", "")
        return r
    try:
        with syscalls.Tracer(pid, os.path.join(workdir, "strace.txt")) as tracer:
            traced = bench.load(sc, target)
    except syscalls.Unavailable as e:
        r.update(errors=1, error_text=str(e))
        return r
    r["strace_command"] = " ".join(tracer.command)
    if traced["errors"] or not traced["ops"] or tracer.counts is None:
        r["errors"] = max(1, traced["errors"])
        r["error_text"] = traced.get("error_text") or "strace wrote no summary"
        return r
    kinds = syscalls.by_kind(tracer.counts)
    r["syscalls"] = tracer.counts
    r["per_tx"] = {k: round(v / traced["ops"], 3) for k, v in kinds.items()}
    r["per_tx"]["total"] = round(sum(kinds[k] for k in syscalls.KIND_NAMES) / traced["ops"], 3)
    r["traced_transactions"] = traced["ops"]
    return r


def summarise(sc, target, rounds):
    """One row per scenario and pooler: each figure's median over the error-free rounds."""
    ok = [r for r in rounds if not r["errors"]]
    row = {"name": sc.name, "target": target, "clients": sc.clients,
           "round_trips": sc.round_trips, "floor": round(floor(sc), 2),
           "errors": 0 if ok else sum(r["errors"] for r in rounds), "rounds": rounds}
    if not ok:
        row["error_text"] = rounds[-1].get("error_text", "")
        return row
    row["per_tx"] = {k: statistics.median(r["per_tx"][k] for r in ok)
                     for k in ok[0]["per_tx"]}
    cpu = [r["cpu_us_per_tx"] for r in ok if r["cpu_us_per_tx"] is not None]
    row["cpu_us_per_tx"] = statistics.median(cpu) if cpu else None
    return row


def run_plan(bench, plan, rounds, progress, workdir):
    """Every profile scenario on every pooler, interleaved by round; one row per pair."""
    pairs = [(sc, t) for sc, targets in plan for t in targets]
    steps, results, step = len(pairs) * rounds, [], 0
    try:
        for sc, targets in plan:
            by_target = {t.name: [] for t in targets}
            for rnd in range(1, rounds + 1):
                for t in targets:
                    step += 1
                    progress.step(step, steps, f"profile {sc.name} on {t.name}, "
                                  f"round {rnd}/{rounds}", sc.est_seconds)
                    r = measure(bench, sc, t, workdir)
                    by_target[t.name].append(r)
                    if r["errors"]:
                        progress.note(f"errors: profile {sc.name} on {t.name}: "
                                      f"{(r.get('error_text') or '').strip()[:160]}")
            results += [summarise(sc, name, rs) for name, rs in by_target.items()]
    finally:
        progress.finish()
    return results


def _cell(v, digits=2):
    return "-" if v is None else f"{v:,.{digits}f}"


def table(rows):
    """The report's table: system calls per transaction by kind, the floor, CPU per
    transaction, and Sluice's CPU against PgBouncer's on the same row."""
    cols = ["scenario", "target", "round trips/tx", "read", "write", "epoll_wait", "epoll_ctl",
            "other", "total", "floor", "total / floor", "failed calls", "CPU us/tx",
            "CPU vs PgBouncer"]
    lines = ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    cpu = {(r["name"], r["target"]): r.get("cpu_us_per_tx") for r in rows if not r["errors"]}
    for r in rows:
        head = [r["name"], r["target"], str(r["round_trips"])]
        if r["errors"]:
            why = (r.get("error_text") or "").strip().splitlines() or ["(no message)"]
            lines.append("| " + " | ".join(head + [f"failed: {why[0][:160]}"] +
                                            ["-"] * (len(cols) - 4)) + " |")
            continue
        p = r["per_tx"]
        base = cpu.get((r["name"], "pgbouncer"))
        vs = "-"
        if r["target"] == "sluice" and base and r["cpu_us_per_tx"] is not None:
            vs = f"{r['cpu_us_per_tx'] / base:.2f}x"
        cells = head + [_cell(p[k]) for k in syscalls.KIND_NAMES] + [
            _cell(p["total"]), _cell(r["floor"]), f"{p['total'] / r['floor']:.2f}x",
            _cell(p["failed"]), _cell(r["cpu_us_per_tx"], 1), vs]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_report(path, rows, meta):
    lines = ["# Sluice benchmark: system calls and CPU per transaction", "",
             f"{meta['date']}, {meta['mode']} profile, {meta['rounds']} round(s). Each "
             "scenario runs a fixed number of transactions against each pooler twice, "
             "untraced (CPU time) and under `strace -c -f` (system calls); every figure is "
             "the median over the rounds. strace stops the pooler at every call, so the "
             "speed of these runs says nothing and is not reported.", ""]
    lines += report.context(meta)
    lines += ["## System calls per transaction", ""] + table(rows) + [""]
    lines += [
        "## How the figures are taken", "",
        "- System calls: `strace -c -f -p PID` attached to the pooler (every thread) for the "
        "whole traced run, divided by the transactions pgbench or mongo_load completed. "
        "*read* counts read, recvfrom, recvmsg, readv; *write* counts write, sendto, sendmsg, "
        "writev; *epoll_wait* any wait for events (epoll_wait, epoll_pwait, poll); *other* "
        "everything else (accept, close, timers, clock reads that are system calls). "
        "*failed calls* are those that returned an error, such as a read that found nothing "
        "(EAGAIN). The counts include each client's login and logout, spread over its "
        f"transactions; a warm-up of {WARM_UP_COUNT} transactions per client opens the "
        "server connections before anything is counted.",
        f"- Floor: {RW_PER_ROUND_TRIP} reads and writes per round trip (the client's batch "
        "read, written to the server, the answer read, written to the client) plus "
        f"{WAITS_PER_ROUND_TRIP} waits (for the client, for the server) per round trip, "
        "which the events of several clients can share: "
        f"round trips x ({RW_PER_ROUND_TRIP} + {WAITS_PER_ROUND_TRIP} / clients). Round "
        "trips per transaction: 1 for -S (simple or extended: Parse, Bind, Describe, "
        "Execute and Sync go as one batch), 7 for tpcb-like (BEGIN, 5 statements, END), "
        "1 for a MongoDB find or insert_one.",
        "- CPU us/tx: the pooler's user + system time from /proc/PID/stat over the untraced "
        "run, per transaction; *CPU vs PgBouncer* is Sluice's over PgBouncer's (below 1 "
        f"is less CPU). The kernel counts it in ticks of {1000 // os.sysconf('SC_CLK_TCK')} ms, "
        "so the few transactions of a quick profile give coarse figures.",
        "- The exact commands and every round's counts, call by call, are in results.json.", ""]
    report.write_lines(path, lines)


def check(rows):
    """What --check --profile demands: counts and CPU for every row, without errors."""
    problems = []
    for r in rows:
        where = f"profile {r['name']} on {r['target']}"
        if r["errors"]:
            problems.append(f"{where}: {(r.get('error_text') or '').strip()[:300]}")
        elif not r["per_tx"]["total"] or r.get("cpu_us_per_tx") is None:
            problems.append(f"{where}: no system calls or no CPU time counted")
    return problems
