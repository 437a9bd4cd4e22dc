"""What is run. Full runs last a fixed time per pgbench run; quick runs do a fixed number of
transactions per client instead, so a slow start on a loaded machine cannot leave a quick run
without results."""
from dataclasses import dataclass, field


@dataclass
class Scenario:
    group: str  # one table in the report, one chart when it spans several client counts
    name: str
    kind: str  # "pgbench", "copy" or "mongo"
    clients: int
    args: list = field(default_factory=list)  # pgbench arguments, "@file" for a script below
    seconds: float = 0  # run for this long ...
    count: int = 0  # ... or this many transactions per client
    script: str = ""  # pgbench custom script (-f), written to a file
    rows_per_tx: int = 0  # > 0: throughput is reported in rows/s
    truncate: str = ""  # table emptied before each run, so runs start alike
    op: str = ""  # mongo_load --op
    prepared_statements: bool = False  # needs protocol-level prepared statements
    auth: str = ""  # auth_type of a logins scenario: its targets ask for a password this way
    unit: str = ""  # what the throughput counts, when not the load generator's own unit
    round_trips: int = 0  # --profile: client-pooler-server round trips per transaction
    relay: bool = False  # bench/floor_relay runs it too, as the reference hop

    @property
    def est_seconds(self):
        """A rough duration for the progress display's estimate."""
        if self.seconds:
            return self.seconds + 1  # + connecting, + reading the transaction logs
        if self.round_trips:  # --profile: a warm-up, an untraced run, a run under strace
            per_round_trip = 2.5e-3 if self.clients == 1 else 1e-3  # measured, loaded 2 cores
            return 3 + self.count * self.clients * self.round_trips * per_round_trip
        return 1.0


SELECT_MODES = ("simple", "extended", "prepared")
# One client, one transaction at a time: what a round trip through each target costs in time.
LATENCY_GROUP = "round trip, 1 client"


def pg_scenarios(quick):
    secs = 0 if quick else 10
    out = []

    def amount(clients, quick_total):
        return {"count": max(5, quick_total // clients)} if quick else {"seconds": secs}

    out.append(Scenario(LATENCY_GROUP, "-S -M simple c=1", "pgbench", 1,
                        ["-S", "-M", "simple", "-c", "1"], relay=True, **amount(1, 500)))
    for mode in SELECT_MODES:
        for c in (10, 100, 1000):
            out.append(Scenario(f"pgbench -S -M {mode}", f"-S -M {mode} c={c}", "pgbench", c,
                                ["-S", "-M", mode, "-c", str(c), "-j", "2"],
                                prepared_statements=(mode == "prepared"), **amount(c, 2000)))
    c = 10 if quick else 20
    out.append(Scenario("pgbench -C", f"-S -C c={c}", "pgbench", c,
                        ["-S", "-C", "-c", str(c), "-j", "2"], **amount(c, 200)))
    c = 10 if quick else 50
    out.append(Scenario("pgbench tpcb-like", f"tpcb-like c={c}", "pgbench", c,
                        ["-c", str(c), "-j", "2"], **amount(c, 500)))

    rows = 20_000 if quick else 1_000_000
    out.append(Scenario("batch load", f"COPY {rows:,} rows", "copy", 1, count=rows,
                        rows_per_tx=1, truncate="bench_copy"))
    batches = 10 if quick else 200
    values = ",".join(f"({i},'row {i}')" for i in range(1000))
    out.append(Scenario("batch load", f"INSERT 1,000 rows per statement x{batches}", "pgbench",
                        1, ["-c", "1", "-f", "@script"], count=batches, rows_per_tx=1000,
                        script=f"INSERT INTO bench_batch (i, s) VALUES {values};\n",
                        truncate="bench_batch"))
    singles = 1000 if quick else 20000
    out.append(Scenario("batch load", f"single-row INSERT x{singles:,}", "pgbench", 1,
                        ["-c", "1", "-f", "@script"], count=singles, rows_per_tx=1,
                        script="INSERT INTO bench_insert (v, t) VALUES (1, 'single row');\n",
                        truncate="bench_insert"))
    return out


LOGIN_AUTH = ("scram-sha-256", "md5")


def login_scenarios(quick):
    """New logins per second: pgbench -C opens a connection for every transaction, as a client
    that must prove its password. The targets of each scenario log in as roles whose password
    the server keeps and asks for the scenario's way (bench/run, start_login_poolers)."""
    c = 20
    amount = {"count": 5} if quick else {"seconds": 10}
    return [Scenario("logins", f"-C -S {auth} c={c}", "pgbench", c,
                     ["-S", "-C", "-c", str(c), "-j", "2"], auth=auth, unit="logins/s",
                     **amount) for auth in LOGIN_AUTH]


MONGO_DOCS = 1000  # prepared documents that find (by _id) and scan read


def mongo_scenarios(quick):
    """The MongoDB-wire test server manages a few thousand simple operations per second, so
    quick runs stay short and client counts modest."""
    secs = 1.5 if quick else 8
    clients = (10, 50) if quick else (10, 50, 200)
    out = [Scenario(LATENCY_GROUP, "mongo find c=1", "mongo", 1, op="find", seconds=secs,
                    relay=True)]
    for op in ("find", "insert", "insert_many", "scan"):
        for c in (clients if op in ("find", "insert") else clients[:1]):
            label = {"insert": "insert_one", "insert_many": "insert_many x1,000"}.get(op, op)
            # insert_one at 50 clients: how close to direct any hop can come under load.
            out.append(Scenario(f"mongo {label}", f"{label} c={c}", "mongo", c, op=op,
                                seconds=secs, relay=(op == "insert" and c == 50)))
    return out


def profile_scenarios(quick):
    """--profile: a fixed number of transactions per client (pgbench -t), so that syscalls and
    CPU divide by a known count, at one client (every event wakes the pooler alone) and at ten.
    round_trips: client-pooler-server exchanges per transaction; -M extended sends Parse, Bind,
    Describe, Execute and Sync as one batch, and the default tpcb-like script runs seven
    statements (BEGIN, three UPDATEs, a SELECT, an INSERT, END), one round trip each."""
    total = 400 if quick else 10_000
    out = []
    for c in (1, 10):
        per_client = {"count": max(20, total // c)}
        for mode in ("simple", "extended"):
            out.append(Scenario("profile", f"-S -M {mode} c={c}", "pgbench", c,
                                ["-S", "-M", mode, "-c", str(c)] + (["-j", "2"] if c > 1 else []),
                                round_trips=1, **per_client))
        out.append(Scenario("profile", f"tpcb-like c={c}", "pgbench", c,
                            ["-c", str(c)] + (["-j", "2"] if c > 1 else []), round_trips=7,
                            **{"count": max(10, per_client["count"] // 5)}))
        for op, label in (("find", "find"), ("insert", "insert_one")):
            out.append(Scenario("profile", f"mongo {label} c={c}", "mongo", c, op=op,
                                round_trips=1, count=max(10, (total // 5) // c)))
    return out
