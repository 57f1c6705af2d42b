#!/usr/bin/env python3
"""sec_pass: one full `processing` poll pass at scale (issue 10 item 1).

    python3 bench/sec_pass.py --scale S --out FILE.json

Seeds a private PostgreSQL straight by SQL: one advertiser, OFFERS offers
(10,000 x scale, at least 20) with rule bench_crm (bench/rules) pointing
at the mock CRM (build/bench/bench_crm, a process of its own answering
after 100 ms, a deterministic 20 % of ids "callback"), 100 leads each in
status 2 with ext 'E<id>' and comment 'processing' (what setstc writes for
an unchanged answer), created a day ago; only the processing schedule rows
are due. One `leadsync run` then polls every pair once; the pass ends when
every processing pair has a run recorded after the start.

Figures: the pass's wall time (first poll_runs.started to last finished),
leads checked and changes applied per second, CPU seconds of the daemon,
PostgreSQL and the mock, the daemon's peak RSS, WAL bytes and the HOT share
of the lead updates. Ceilings measured in the same run:
  latency bound   requests x delay / requests in flight (256);
  mock capacity   the mock (no delay) driven by wrk -c256 with the same
                  URLs: what the pass's requests would take at that rate;
  PostgreSQL apply build/bench/bench_pgwrite (the poller's own select and
                  write statements, from LEADSYNC_DB_WORKERS connections)
                  on a freshly seeded database of the same size; skipped,
                  with a note, while that program is not built.
The pass time is held to max(latency bound, PostgreSQL apply) (target
<= 1.5x), and, at full scale, to 20 s.

Then the rule-bound pass (issue 11: rules on threads): 2,000 offers x 100
(scaled) of the same fresh seed polled with bench/rules/bench_heavy.lua,
whose process burns ~4 ms of CPU per batch and changes nothing, first with
LEADSYNC_RULE_THREADS=1 (the baseline: every rule call in turn, as when
rules ran on the loop), then with the default (one per core). The ratio
says what spreading the rules over the cores buys; the main pass cannot
show it on 2 cores, where PostgreSQL's writes already keep both busy.

The pass machinery (seed, run_pass, Mock) is shared with sec_growth.py.
"""
import contextlib
import copy
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

BENCH_CRM = os.path.join(bl.BENCH_BIN, "bench_crm")
BENCH_PGWRITE = os.path.join(bl.BENCH_BIN, "bench_pgwrite")
RULES = os.path.join(bl.ROOT, "bench", "rules")
DELAY_MS = 100
CHANGE = 0.2
IN_FLIGHT = 256   # LEADSYNC_CRM_IN_FLIGHT's default
DB_WORKERS = 2    # LEADSYNC_DB_WORKERS's default
BATCH = 100       # bench/rules/bench_crm.lua
RB_OFFERS = 2000  # the rule-bound pass's offers at scale 1
KEY = "bench-key"
PGWRITE_WORKER = "bench-pgwrite"


class Mock(bl.Proc):
    """build/bench/bench_crm on a free loopback port."""

    def __init__(self, delay_ms=DELAY_MS, change=CHANGE, name="crm"):
        self.port = bl.free_port()
        self.host = "127.0.0.1:%d" % self.port
        super().__init__([BENCH_CRM, "--listen", self.host, "--delay-ms", str(delay_ms),
                          "--change", str(change), "--key", KEY], name=name)
        try:
            bl.wait_port(self.port, 10)
        except BaseException as e:
            tail = self.tail()
            self.stop()
            if isinstance(e, TimeoutError):
                raise RuntimeError("bench_crm did not start:\n" + tail) from None
            raise

    def stats(self):
        with urllib.request.urlopen("http://%s/stats" % self.host, timeout=10) as r:
            return json.loads(r.read())


def on_db(pg, name):
    """pg as seen through another database of the same cluster (no
    cluster of its own: never close it)."""
    db = copy.copy(pg)
    db.conninfo = "%s dbname=%s" % (pg.conninfo, name)
    return db


def seed(pg, offers, per_offer, host):
    """A fresh database of offers x per_offer leads in status 2 (truncates
    whatever was there). Only the processing pairs are due (now). Ends
    with a checkpoint: the pass then pays the full-page images a
    production pass pays on pages untouched since the last checkpoint, and
    never the flush of the seed's dirty pages. Returns the seconds it took."""
    t0 = time.monotonic()
    psql_script(pg, """
TRUNCATE advertisers, offers, goals, clicks, customers, leads, lead_history, poll_schedule,
         poll_runs, postbacks_in CASCADE;
INSERT INTO advertisers (id, name, api_key) VALUES (1, 'Bench', 'k-bench');
INSERT INTO offers (id, advertiser, name, rule, params, secret_params)
  SELECT g, 1, 'Bench ' || g, 'bench_crm',
         jsonb_build_object('host', '%(host)s', 'key', '%(key)s'), '{key}'
  FROM generate_series(1, %(offers)d) g;
UPDATE poll_schedule SET next_due = now() + interval '10 years' WHERE variant <> 'processing';
UPDATE poll_schedule SET next_due = now() WHERE variant = 'processing';
INSERT INTO leads (id, offer, ext, status, comment, created, updated)
  SELECT g, (g - 1) / %(per)d + 1, 'E' || g, 2, 'processing',
         now() - interval '1 day', now() - interval '1 day'
  FROM generate_series(1, %(leads)d) g;
SELECT setval(pg_get_serial_sequence('leads', 'id'), %(leads)d);
ANALYZE;
CHECKPOINT;
""" % {"host": host, "key": KEY, "offers": offers, "per": per_offer,
       "leads": offers * per_offer})
    return time.monotonic() - t0


def psql_script(pg, sql):
    """Runs a script of several statements on pg (stops at the first error)."""
    out = subprocess.run(["psql", pg.conninfo, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"],
                         input=sql, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("psql failed: " + out.stderr.strip())


_critical = [0, None]  # depth of uninterrupted(), the signal held back


def _on_sigterm(signum, frame):
    if _critical[0]:
        _critical[1] = signum
    else:
        sys.exit(128 + signum)


def exit_on_sigterm():
    """SIGTERM (bench/run.py giving up, say) unwinds like an exception, so
    the with blocks stop the daemon, the mock and the cluster."""
    signal.signal(signal.SIGTERM, _on_sigterm)


@contextlib.contextmanager
def uninterrupted():
    """Holds SIGTERM back while a cluster or mock is started and handed to
    an ExitStack: one stopped half-way would be left running, since its
    object, which knows how to stop it, does not exist yet."""
    _critical[0] += 1
    try:
        yield
    finally:
        _critical[0] -= 1
        if not _critical[0] and _critical[1]:
            sys.exit(128 + _critical[1])


def start_all(stack):
    """A private cluster and the mock, both stopped when stack unwinds."""
    with uninterrupted():
        pg = stack.enter_context(bl.PgLocal())
        mock = stack.enter_context(Mock())
    return pg, mock


def lead_stats(pg):
    r = pg.psql("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'leads'")
    return int(r[0][0]), int(r[0][1])


def wait_backends_gone(pg, timeout=30):
    """The daemon's sessions have ended (and so flushed their statistics)."""
    bl.wait_until(lambda: pg.value(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        " AND pid <> pg_backend_pid()") == "0", timeout, "the daemon's sessions to end", 0.1)


def run_pass(pg, mock, offers, timeout, **settings):
    """One `leadsync run` until every processing pair has run once; returns
    the pass's figures. Raises with the daemon's log tail if it dies.
    settings: more of the daemon's (rule_threads=1, say)."""
    upd0, hot0 = lead_stats(pg)
    wal0 = pg.wal_lsn()
    pg_cpu0 = pg.cpu()
    mock_cpu0 = mock.cpu()
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        with uninterrupted():
            d = stack.enter_context(bl.spawn_daemon(
                pg, rules=RULES, listen="127.0.0.1:%d" % bl.free_port(),
                crm_in_flight=IN_FLIGHT, crm_per_host=IN_FLIGHT, **settings))
        done_sql = ("SELECT count(*) FILTER (WHERE last_run IS NOT NULL OR fail_count > 0)"
                    " FROM poll_schedule WHERE variant = 'processing'")

        def done():
            if not d.alive():
                raise RuntimeError("leadsync run died (exit %s):\n%s" % (d.p.returncode, d.tail()))
            if not mock.alive():
                raise RuntimeError("bench_crm died (exit %s):\n%s" % (mock.p.returncode,
                                                                      mock.tail()))
            return int(pg.value(done_sql)) >= offers

        try:
            bl.wait_until(done, timeout, "the pass to finish (%d pairs)" % offers, 0.2)
        except BaseException:
            bl.log("daemon log tail:\n" + d.tail())
            raise
        fig = {
            "daemon_cpu_s": d.cpu(),
            "daemon_rss_mb": d.rss_peak(),
            "pg_cpu_s": pg.cpu() - pg_cpu0,
            "mock_cpu_s": mock.cpu() - mock_cpu0,
            "wal_bytes": pg.wal_lsn() - wal0,
            "wall_seen_s": time.monotonic() - t0,
        }
    # the daemon is stopped: its sessions flush their statistics as they end
    wait_backends_gone(pg)
    upd1, hot1 = lead_stats(pg)
    fig["lead_updates"] = upd1 - upd0
    fig["hot_pct"] = round(100.0 * (hot1 - hot0) / (upd1 - upd0), 1) if upd1 > upd0 else None
    r = pg.psql("SELECT count(*), coalesce(sum(leads_asked), 0), coalesce(sum(leads_changed), 0),"
                " coalesce(sum(leads_skipped), 0), count(*) FILTER (WHERE outcome <> 'ok'),"
                " extract(epoch FROM max(finished) - min(started))"
                " FROM poll_runs WHERE variant = 'processing'")[0]
    fig.update(runs=int(r[0]), leads_asked=int(r[1]), changes=int(r[2]), skipped=int(r[3]),
               runs_failed=int(r[4]), wall_s=float(r[5] or 0))
    fig["outcomes"] = dict((o, int(n)) for o, n in pg.psql(
        "SELECT outcome, count(*) FROM poll_runs GROUP BY 1 ORDER BY 1"))
    fig["pairs_failed"] = int(pg.value(
        "SELECT count(*) FROM poll_schedule WHERE variant = 'processing' AND fail_count > 0"))
    fig["status3"] = int(pg.value("SELECT count(*) FROM leads WHERE status = 3"))
    return fig


def wrk_capacity(seconds, batches):
    """Requests per second of a mock without delay under wrk -c256, with the
    pass's URLs (100 ids each, `batches` distinct requests in turn)."""
    with contextlib.ExitStack() as stack:
        with uninterrupted():
            mock = stack.enter_context(Mock(delay_ms=0, name="crm-wrk"))
        script = stack.enter_context(tempfile.NamedTemporaryFile("w", suffix=".lua"))
        script.write("""
local paths, n, i = {}, %d, 0
for b = 0, n - 1 do
  local ids = {}
  for k = 1, %d do ids[k] = "E" .. (b * %d + k) end
  paths[b + 1] = "/api/orders?ids=" .. table.concat(ids, ",") .. "&key=%s"
end
request = function()
  i = i %% n + 1
  return wrk.format("GET", paths[i])
end
""" % (min(batches, 1000), BATCH, BATCH, KEY))
        script.flush()
        cpu0 = mock.cpu()
        out = subprocess.run(["wrk", "-t2", "-c%d" % IN_FLIGHT, "-d%ds" % seconds, "--latency",
                              "-s", script.name, "http://%s" % mock.host],
                             capture_output=True, text=True, timeout=seconds + 60)
        if out.returncode != 0:
            raise RuntimeError("wrk failed (exit %d): %s" % (out.returncode, out.stderr.strip()))
        cpu = mock.cpu() - cpu0
        st = mock.stats()
    rps = None
    for line in out.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            rps = float(line.split()[1])
    if rps is None:
        raise RuntimeError("wrk printed no rate:\n" + out.stdout + out.stderr)
    return {"rps": rps, "seconds": seconds, "mock_cpu_s": cpu, "mock_requests": st["requests"],
            "mock_bad": st["bad"], "wrk": out.stdout.strip().splitlines()}


def pg_apply(pg, offers, per_offer):
    """PostgreSQL's own time for the pass's writes: bench_pgwrite on pg, a
    copy of the seeded database made before the pass, with its processing
    pairs leased to bench_pgwrite's worker name."""
    pg.psql("UPDATE poll_schedule SET lease_owner = '%s', lease_until = now() + interval '1 day'"
            " WHERE variant = 'processing'" % PGWRITE_WORKER)
    bl.log("pass: PostgreSQL apply, bench_pgwrite over %d offers" % offers)
    upd0, hot0 = lead_stats(pg)
    wal0, cpu0 = pg.wal_lsn(), pg.cpu()
    out = subprocess.run([BENCH_PGWRITE, "--db", pg.conninfo, "--offers", str(offers),
                          "--leads", str(per_offer), "--batch", str(BATCH), "--change", str(CHANGE),
                          "--connections", str(DB_WORKERS), "--worker", PGWRITE_WORKER],
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError("bench_pgwrite failed (exit %d):\n%s" % (out.returncode, out.stderr))
    lines = [ln for ln in out.stdout.splitlines() if ln.strip().startswith("{")]
    if not lines:
        raise RuntimeError("bench_pgwrite printed no JSON:\n" + out.stdout + out.stderr)
    res = json.loads(lines[-1])
    res["pg_cpu_s"] = r3(pg.cpu() - cpu0)
    res["wal_bytes"] = pg.wal_lsn() - wal0
    wait_backends_gone(pg)
    upd1, hot1 = lead_stats(pg)
    res["hot_pct"] = round(100.0 * (hot1 - hot0) / (upd1 - upd0), 1) if upd1 > upd0 else None
    return res


def rule_bound(cluster, mock, offers):
    """The rule-bound pass: OFFERS of the seeded offers (database "bound", a
    copy of the fresh seed) polled with bench/rules/bench_heavy.lua, whose
    process spends ~4 ms of CPU per batch and changes nothing, once with one
    rule thread (the baseline: every rule call one after another, as when
    rules ran on the loop) and once with the default (one per core).
    Returns {threads: figures}."""
    out = {}
    for threads in (1, 0):
        cluster.psql("DROP DATABASE IF EXISTS bound_run")
        cluster.psql("CREATE DATABASE bound_run TEMPLATE bound STRATEGY FILE_COPY")
        pg = on_db(cluster, "bound_run")
        psql_script(pg, """
UPDATE offers SET rule = 'bench_heavy';
UPDATE poll_schedule SET next_due = now() + interval '10 years' WHERE offer > %d;
CHECKPOINT;
""" % offers)
        bl.log("pass: rule-bound, %d offers, %s rule threads" % (offers, threads or "default"))
        out[threads] = run_pass(pg, mock, offers, timeout=600, rule_threads=threads)
    cluster.psql("DROP DATABASE bound_run")
    return out


def change_ok(changes, leads):
    """True when the changed share is the mock's 20 %, within four standard
    deviations of a binomial draw of that many leads (and 0.5 points)."""
    if leads == 0:
        return False
    sd = math.sqrt(CHANGE * (1 - CHANGE) / leads)
    return abs(changes / leads - CHANGE) <= 4 * sd + 0.005


def r3(x):
    return None if x is None else round(x, 3)


def main():
    args = bl.section_args(__doc__.splitlines()[0])
    exit_on_sigterm()
    scale = args.scale
    offers = bl.scaled(10000, scale, 20)
    per_offer = 100
    leads = offers * per_offer
    requests = offers * ((per_offer + BATCH - 1) // BATCH)
    t_start = time.monotonic()
    bl.log("pass: %d offers x %d leads (scale %g)" % (offers, per_offer, scale))
    extra = {"scale": scale, "offers": offers, "leads_per_offer": per_offer, "leads": leads,
             "batch": BATCH, "delay_ms": DELAY_MS, "change": CHANGE,
             "settings": {"crm_in_flight": IN_FLIGHT, "crm_per_host": IN_FLIGHT,
                          "db_workers": DB_WORKERS},
             "machine": bl.machine(), "commit": bl.commit()}
    have_pgwrite = os.access(BENCH_PGWRITE, os.X_OK)
    with contextlib.ExitStack() as stack:
        cluster, mock = start_all(stack)
        # The pass runs on database "seed"; bench_pgwrite on "apply", a file
        # copy of it taken before the pass (the same freshly seeded state,
        # in seconds rather than a second seeding's half minute).
        cluster.psql("CREATE DATABASE seed")
        pg = on_db(cluster, "seed")
        pg.migrate()
        extra["seed_s"] = r3(seed(pg, offers, per_offer, mock.host))
        if have_pgwrite:
            t0 = time.monotonic()
            cluster.psql("CREATE DATABASE apply TEMPLATE seed STRATEGY FILE_COPY")
            extra["copy_s"] = r3(time.monotonic() - t0)
        cluster.psql("CREATE DATABASE bound TEMPLATE seed STRATEGY FILE_COPY")
        bl.log("pass: seeded in %.1f s; running the pass" % extra["seed_s"])
        p = run_pass(pg, mock, offers, timeout=max(120.0, 900.0 * scale))
        p["mock"] = mock.stats()
        bl.log("pass: %.2f s, %d runs, %d changes" % (p["wall_s"], p["runs"], p["changes"]))
        extra["pass"] = dict((k, r3(v) if isinstance(v, float) else v) for k, v in p.items())

        rb_offers = bl.scaled(RB_OFFERS, scale, 20)
        rb = rule_bound(cluster, mock, rb_offers)
        extra["rule_bound"] = dict(("threads_%s" % (t or "default"),
                                    dict((k, r3(v) if isinstance(v, float) else v)
                                         for k, v in f.items())) for t, f in rb.items())

        wrk_s = max(1, int(round(5 * min(scale, 1.0) + 0.49)))
        bl.log("pass: mock capacity, wrk -c%d for %d s" % (IN_FLIGHT, wrk_s))
        cap = wrk_capacity(wrk_s, requests)
        cap["pass_requests_s"] = r3(requests / cap["rps"])
        extra["mock_capacity"] = cap

        apply = pg_apply(on_db(cluster, "apply"), offers, per_offer) if have_pgwrite else None
        extra["pg_apply"] = apply

    latency = requests * DELAY_MS / 1000.0 / IN_FLIGHT
    wall = p["wall_s"]
    ceilings = [("latency bound", latency)]
    if apply:
        ceilings.append(("PostgreSQL apply", apply["seconds"]))
    c_name, c_val = max(ceilings, key=lambda c: c[1])
    ratio = wall / c_val
    asked, changes = p["leads_asked"], p["changes"]
    frac = changes / asked if asked else 0.0
    extra["change_fraction"] = round(frac, 4)
    extra["change_fraction_ok"] = change_ok(changes, asked)
    extra["changes_match_status3"] = changes == p["status3"]
    if p["wal_bytes"] and p["runs"]:
        extra["wal_bytes_per_batch"] = int(p["wal_bytes"] / p["runs"])

    notes = []
    if p["runs_failed"] or p["pairs_failed"] or p["runs"] != requests or asked != leads:
        notes.append("%d of %d runs failed, %d leads asked of %d" %
                     (p["runs_failed"], p["runs"], asked, leads))
    if not extra["change_fraction_ok"] or not extra["changes_match_status3"]:
        notes.append("changes %d (%.1f %%) vs %d leads now in 3: expected ~20 %%" %
                     (changes, 100 * frac, p["status3"]))
    base_note = "; ".join(notes)

    rows = []
    note = "first claim to last commit; LEADSYNC_CRM_PER_HOST=256=IN_FLIGHT (the mock is one host)"
    if not apply:
        note += "; bench_pgwrite not built: latency bound only"
    if scale < 1:
        note += "; the 20 s target applies at scale 1"
    rows.append(bl.row("pass wall time", r3(wall), "s", ceiling=r3(c_val), ceiling_name=c_name,
                       ratio=r3(ratio), target="<= 1.5",
                       ok=bool(ratio <= 1.5 and not base_note),
                       note="; ".join(x for x in (base_note, note) if x)))
    if scale >= 1:
        rows.append(bl.row("pass wall time, absolute", r3(wall), "s", target="<= 20",
                           ok=wall <= 20 and not base_note,
                           note="%d leads, %d requests" % (leads, requests)))
    rows.append(bl.row("leads checked", round(asked / wall) if wall else 0, "leads/s"))
    chg_note = "%d changes (%.1f %% of asked)" % (changes, 100 * frac)
    if apply and apply.get("changes_per_s") and wall > 0:
        pg_rate = apply["changes_per_s"]
        rows.append(bl.row("changes applied", round(changes / wall) if wall else 0, "changes/s",
                           ceiling=round(pg_rate), ceiling_name="PostgreSQL change rate",
                           ratio=r3(changes / wall / pg_rate), target=">= 0.5",
                           ok=bool(changes / wall / pg_rate >= 0.5
                                   and extra["change_fraction_ok"]), note=chg_note))
    else:
        rows.append(bl.row("changes applied", round(changes / wall) if wall else 0, "changes/s",
                           note=chg_note + "; bench_pgwrite not built: no PostgreSQL rate"))
    # Everything the pass ran shares the machine's cores: the CPU it took
    # in all, spread over them, is a floor no scheduling gets under. It is
    # not a target, it says whether the pass is bound by the machine.
    cores = os.cpu_count() or 1
    cpu_all = p["daemon_cpu_s"] + p["pg_cpu_s"] + p["mock_cpu_s"]
    rows.append(bl.row("cores busy during the pass",
                       round(100 * cpu_all / cores / wall, 1) if wall else 0, "%",
                       note="(daemon + PostgreSQL + mock CPU) / (%d cores x wall time); near "
                            "100 the pass is bound by the machine, not by waiting" % cores))
    rows.append(bl.row("daemon CPU", r3(p["daemon_cpu_s"]), "s"))
    rows.append(bl.row("PostgreSQL CPU", r3(p["pg_cpu_s"]), "s",
                       note="WAL %.0f MB, HOT %s %% of lead updates" %
                       (p["wal_bytes"] / 1e6, p["hot_pct"])))
    rows.append(bl.row("mock CRM CPU", r3(p["mock_cpu_s"]), "s"))
    rows.append(bl.row("daemon peak RSS", round(p["daemon_rss_mb"], 1), "MB", target="<= 256",
                       ok=p["daemon_rss_mb"] <= 256))
    one, many = rb[1], rb[0]
    rb_note = ("%d offers x %d leads, rule bench_heavy (~4 ms CPU per batch, no changes); "
               "baseline: the same pass with LEADSYNC_RULE_THREADS=1 (%.2f s), every rule call "
               "in turn as when rules ran on the loop; %d cores" % (rb_offers, per_offer,
                                                                   one["wall_s"], cores))
    if one["runs_failed"] or many["runs_failed"]:
        rb_note += "; %d + %d runs failed" % (one["runs_failed"], many["runs_failed"])
    rows.append(bl.row("rule-bound pass, rule threads = cores", r3(many["wall_s"]), "s",
                       ceiling=r3(one["wall_s"]), ceiling_name="1 rule thread",
                       ratio=r3(many["wall_s"] / one["wall_s"]) if one["wall_s"] else None,
                       note=rb_note))
    rows.append(bl.row("latency bound", r3(latency), "s",
                       note="%d requests x %d ms / %d in flight" % (requests, DELAY_MS, IN_FLIGHT)))
    rows.append(bl.row("mock CRM capacity", round(cap["rps"]), "req/s",
                       note="no delay, wrk -c%d %d s (wrk shares the 2 cores): the pass's %d "
                            "requests in %.2f s" % (IN_FLIGHT, cap["seconds"], requests,
                                                   requests / cap["rps"])))
    if apply:
        rows.append(bl.row("PostgreSQL apply", r3(apply["seconds"]), "s",
                           note="bench_pgwrite, %d connections, %d batches; PostgreSQL CPU %.1f s"
                                % (DB_WORKERS, requests, apply["pg_cpu_s"])))
    else:
        rows.append(bl.row("PostgreSQL apply: bench_pgwrite not built", 0, "s",
                           note="make bench-bin builds it once bench/bench_pgwrite.c is there"))
    extra["section_s"] = r3(time.monotonic() - t_start)
    bl.write_section(args.out, "pass", "Poll pass: %d offers x %d leads, mock CRM at %d ms"
                     % (offers, per_offer, DELAY_MS), rows, extra)
    bl.log("pass: done in %.1f s" % extra["section_s"])


if __name__ == "__main__":
    main()
