"""The report's CPU budget: what the load generator, the pooler and the server each spent per
operation, and the throughput that CPU alone allows a pooled target against direct access.

On a machine where everything shares a few cores, the cores are the bottleneck: a pooler's CPU
per operation is taken from the client and the server, and a CPU-bound run can reach at most
direct's total CPU per operation over the target's ("CPU ceiling"). A measured ratio near the
ceiling says the pooler's own CPU is what it costs; one far below says time goes elsewhere
(waiting, scheduling)."""

def _total(r):
    parts = [r.get("client_cpu_us_per_op"), r.get("server_cpu_us_per_op")]
    if r["target"] != "direct":
        parts.append(r.get("cpu_us_per_op"))
    return None if any(p is None for p in parts) else sum(parts)


def section(results):
    """Markdown lines; none when no run measured the server's CPU (a server not started here)."""
    from .report import TARGET_ORDER, _num  # report imports this module
    rows = [r for r in results if r.get("server_cpu_us_per_op") is not None]
    if not rows:
        return []
    lines = ["## Where the CPU goes", "",
             "CPU microseconds per operation of the load generator (its own, from wait4), the "
             "pooler and the database server (PostgreSQL: every process of the server, "
             "connections opened and closed during the run included; MongoDB: the test server), "
             "in the best round. *CPU ceiling* is direct's total over the target's: the most a "
             "pooled target can reach against direct when the cores are the bottleneck, as they "
             "are when clients, pooler and server share them. *vs direct* is what it reached.",
             "",
             "| scenario | target | load generator | pooler | server | total | vs direct "
             "| CPU ceiling |",
             "|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["name"] for r in rows):
        by = {r["target"]: r for r in rows if r["name"] == name}
        direct = by.get("direct")
        base = _total(direct) if direct else None
        for t in TARGET_ORDER:
            r = by.get(t)
            if not r:
                continue
            total = _total(r)
            pooled = t != "direct"
            vs = ceiling = ""
            if pooled and direct and direct["throughput"]:
                vs = f"{r['throughput'] / direct['throughput']:.2f}x"
            if pooled and base and total:
                ceiling = f"{base / total:.2f}x"
            lines.append("| " + " | ".join([
                name, t, _num(r.get("client_cpu_us_per_op"), 1),
                _num(r.get("cpu_us_per_op"), 1) if pooled else "-",
                _num(r.get("server_cpu_us_per_op"), 1), _num(total, 1), vs, ceiling]) + " |")
    return lines + [""]
