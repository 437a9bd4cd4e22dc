"""Sluice against PgBouncer, row by row, judged against the noise of the rounds: best-of and
median ratios, each target's range over its rounds, and whether the two ranges overlap."""
import statistics

AHEAD = 1.05  # what counts as Sluice being ahead, outside the noise


def spread(result):
    """The error-free rounds of one target on one scenario: best, median, lowest, highest
    throughput and the median CPU per op; None when no round was error-free."""
    ok = [r for r in result.get("rounds", [result]) if not r["errors"] and r["throughput"]]
    if not ok:
        return None
    tp = [r["throughput"] for r in ok]

    def median_of(key):
        v = [r[key] for r in ok if r.get(key) is not None]
        return statistics.median(v) if v else None

    return {"best": max(tp), "median": statistics.median(tp), "low": min(tp), "high": max(tp),
            "rounds": len(tp), "cpu": median_of("cpu_us_per_op"),
            "user": median_of("cpu_user_us_per_op"), "sys": median_of("cpu_sys_us_per_op")}


def judge(b, s):
    """'noise' when the two targets' ranges overlap; otherwise 'ahead' at a median ratio of
    AHEAD or more, else 'behind'. A target with one good round has no range to judge by: its
    row is never 'noise'."""
    if min(b["rounds"], s["rounds"]) > 1 and max(b["low"], s["low"]) <= min(b["high"], s["high"]):
        return "noise"
    return "ahead" if s["median"] / b["median"] >= AHEAD else "behind"


def _tp(v):
    if v["rounds"] == 1:
        return f"{v['best']:,.0f} (one round)"
    return (f"{v['best']:,.0f} / {v['median']:,.0f} ({v['low']:,.0f}-{v['high']:,.0f}, "
            f"{(v['high'] - v['low']) / v['high'] * 100:.0f} %)")


def _lat(r):
    if r.get("p50_ms") is None:
        return "-"
    return f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}"


def _cpu(v):
    return "-" if v["cpu"] is None else f"{v['cpu']:,.1f}"


def section(results, rounds):
    """The report's section: one row per scenario both poolers ran, then the count of rows
    ahead, within the noise and behind. Empty when PgBouncer or Sluice did not run."""
    by = {(r["name"], r["target"]): r for r in results}
    names = [n for n in dict.fromkeys(r["name"] for r in results)
             if (n, "pgbouncer") in by and (n, "sluice") in by]
    if not names:
        return []
    lines = [
        "## Sluice against PgBouncer", "",
        f"Every scenario both poolers ran, {rounds} interleaved round(s). Throughput is "
        "*best / median (lowest-highest, spread)* over each target's error-free rounds; the "
        "ratios are Sluice's over PgBouncer's (above 1: Sluice faster). **~** marks a row "
        "within the noise: the two targets' ranges overlap, so the rounds of one target "
        "differ by as much as the targets do. p50 / p99 latency is each target's best round's; "
        "CPU is the pooler's median CPU per transaction (op, row), and its ratio below 1 "
        "means Sluice used less.", "",
        "| scenario | PgBouncer | Sluice | best ratio | median ratio | noise "
        "| PgBouncer p50 / p99 ms | Sluice p50 / p99 ms | PgBouncer CPU us/op "
        "| Sluice CPU us/op | CPU ratio |",
        "|---" * 11 + "|"]
    verdicts = {"ahead": [], "noise": [], "behind": []}
    not_compared = []
    for name in names:
        rb, rs = by[(name, "pgbouncer")], by[(name, "sluice")]
        b, s = spread(rb), spread(rs)
        if not b or not s:
            failed = "PgBouncer" if not b else "Sluice"
            expected = (rb if not b else rs).get("expected_failure")
            why = f"{failed} failed" + (" (expected)" if expected else "")
            not_compared.append(f"{name}: {why}")
            lines.append(f"| {name} | {_tp(b) if b else 'failed'} | {_tp(s) if s else 'failed'} "
                         f"| - | - | {why} | {_lat(rb) if b else '-'} | {_lat(rs) if s else '-'} "
                         "| - | - | - |")
            continue
        verdict = judge(b, s)
        verdicts[verdict].append(name)
        cpu_ratio = f"{s['cpu'] / b['cpu']:.2f}x" if s["cpu"] and b["cpu"] else "-"
        lines.append(f"| {name} | {_tp(b)} | {_tp(s)} | {s['best'] / b['best']:.2f}x "
                     f"| {s['median'] / b['median']:.2f}x | {'~' if verdict == 'noise' else ''} "
                     f"| {_lat(rb)} | {_lat(rs)} | {_cpu(b)} | {_cpu(s)} | {cpu_ratio} |")
    lines.append("")
    below_par = [n for n in verdicts["behind"]
                 if spread(by[(n, "sluice")])["median"] < spread(by[(n, "pgbouncer")])["median"]]
    compared = sum(len(v) for v in verdicts.values())
    if rounds > 1:
        lines.append(
            f"**{compared} rows compared: {len(verdicts['ahead'])} at >= {AHEAD:.2f}x outside "
            f"the noise, {len(verdicts['noise'])} within the noise (~), "
            f"{len(verdicts['behind'])} below {AHEAD:.2f}x outside the noise ({len(below_par)} "
            "of them below 1.00x).** Judged by the median ratio; a row with a single good "
            "round on either side is never within the noise.")
    else:
        lines.append(
            f"**{compared} rows compared: {len(verdicts['ahead'])} at >= {AHEAD:.2f}x, "
            f"{len(verdicts['behind'])} below ({len(below_par)} of them below 1.00x). With one "
            "round the noise is not judged: these ratios may be nothing but noise.**")
    if not_compared:
        lines.append("Not compared: " + "; ".join(not_compared) + ".")
    lines.append("")
    return lines + cpu_split_table(names, by)


def cpu_split_table(names, by):
    """Each pooler's median CPU per op in its own code (user) and in the kernel on its behalf
    (system calls, wake-ups, the network stack): what a pooler can cut by doing less work, and
    what it can cut only by making fewer calls and wake-ups."""
    rows = []
    for name in names:
        b, s = spread(by[(name, "pgbouncer")]), spread(by[(name, "sluice")])
        if b and s and None not in (b["user"], b["sys"], s["user"], s["sys"]):
            rows.append(f"| {name} | {b['user']:,.1f} | {b['sys']:,.1f} | {s['user']:,.1f} "
                        f"| {s['sys']:,.1f} |")
    if not rows:
        return []
    return [
        "### The poolers' CPU: their own code and the kernel's", "",
        "The CPU per operation above, split: *user* is the pooler's own code (parsing, "
        "pooling, bookkeeping), *kernel* is what the kernel spent on its behalf (system calls, "
        "wake-ups, the loopback network stack). Medians over the error-free rounds, us per op; "
        "the kernel counts both in clock ticks (10 ms), so a short run reads coarsely.",
        "",
        "| scenario | PgBouncer user | PgBouncer kernel | Sluice user | Sluice kernel |",
        "|---" * 5 + "|"] + rows + [""]
