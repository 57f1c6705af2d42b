#!/usr/bin/env python3
"""sec_postbacks: postback ingestion (issue 10, item 2).

One `leadsync run` with default settings on a private PostgreSQL; wrk
(-t2 -c64, bench/postbacks.lua) sends GET /{key}/s2s postbacks that each
create a lead (fixed goal, status hold, a price), every request with its
own request_id; a second run repeats an earlier request_id of the same
wrk thread in 10 % of its requests. After each run the database is the
proof: the leads with the run's request ids are exactly the lead ids
answered 200 "duplicate":false, no answered lead is missing (lost), no
request id made two leads and no repeat made one (duplicated), and the
incoming-postback log holds one 200 row per 200 answer.

Ceiling from the same run: PostgreSQL's own rate for the same rows (lead,
history row, log row) through the daemon's own two statements
(build/bench/bench_pgpost), in groups of the size the daemon formed in
the first run (log rows per transaction, from their xmin), from as many
connections as the daemon has database workers (2). Also measured: groups
of LEADSYNC_COMMIT_BATCH (500), the most one commit may take.

    python3 bench/sec_postbacks.py --scale S --out FILE.json
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

KEY = "k-bench-postbacks"
OFFER = 10
CLICKS = 1000
CONNECTIONS = 64
THREADS = 2
DB_WORKERS = 2       # the daemon's default LEADSYNC_DB_WORKERS
COMMIT_BATCH = 500   # the daemon's default LEADSYNC_COMMIT_BATCH
P99_TARGET_MS = 50.0
RATIO_TARGET = 0.5


T0 = time.monotonic()


def say(msg):
    bl.log("postbacks: %5.1f s %s" % (time.monotonic() - T0, msg))


def seed(pg):
    pg.psql(
        "INSERT INTO advertisers (id, name, api_key) VALUES (1, 'Bench', '%s');"
        "INSERT INTO offers (id, advertiser, name) VALUES (%d, 1, 'Bench offer');"
        "INSERT INTO goals (offer, code, payout, wm, pay, ref, currency)"
        " VALUES (%d, 'lead', 'fixed', 5, 8, 0, 840);"
        "INSERT INTO clicks (id, offer) SELECT ('00000000-0000-4000-8000-'"
        " || lpad(to_hex(g), 12, '0'))::uuid, %d FROM generate_series(0, %d) g;"
        % (KEY, OFFER, OFFER, OFFER, CLICKS - 1))


def http_get(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return 0, ""


def metric(port, name):
    _, text = http_get(port, "/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def db_job_buckets(port):
    """The daemon's database job times (submission to completion, queue
    wait included) as {upper bound in ms: cumulative count}."""
    _, text = http_get(port, "/metrics")
    b = {}
    for line in text.splitlines():
        if line.startswith("leadsync_db_job_duration_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            b[float("inf") if le == "+Inf" else float(le) * 1000.0] = float(line.split()[-1])
    return b


def db_job_quantiles(before, after, qs=(0.5, 0.99, 0.999)):
    """Upper bounds (ms) of the buckets holding each quantile of the jobs
    completed between two scrapes."""
    d = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = d[-1][1] if d else 0
    out = {"jobs": int(total)}
    for q in qs:
        le = next((le for le, n in d if n >= q * total), None) if total else None
        out["p%g_le_ms" % (q * 100)] = None if le is None or le == float("inf") else le
    return out


def wrk_run(port, pg, daemon, run, repeat, seconds, tail):
    out = tempfile.NamedTemporaryFile(prefix="leadsync-bench-wrk-", suffix=".json", delete=False)
    out.close()
    env = dict(os.environ, LSB_KEY=KEY, LSB_CLICKS=str(CLICKS), LSB_RUN=run,
               LSB_REPEAT=str(repeat), LSB_SECONDS=str(seconds), LSB_TAIL=str(tail),
               LSB_OUT=out.name)
    cpu_d, cpu_pg = daemon.cpu(), pg.cpu()
    jobs0 = db_job_buckets(port)
    say("wrk run %s, %d s, %d %% repeats" % (run, seconds, round(repeat * 100)))
    p = subprocess.run(["wrk", "-t%d" % THREADS, "-c%d" % CONNECTIONS, "-d%ds" % seconds,
                        "--latency", "-s", os.path.join(bl.ROOT, "bench", "postbacks.lua"),
                        "http://127.0.0.1:%d" % port],
                       env=env, capture_output=True, text=True, timeout=seconds + 60)
    if p.returncode != 0:
        raise RuntimeError("wrk failed: %s %s" % (p.stdout, p.stderr))
    with open(out.name) as f:
        res = json.load(f)
    os.unlink(out.name)
    res["wrk_stdout"] = p.stdout
    # the requests wrk cut off are still being written: wait for the queue
    bl.wait_until(lambda: metric(port, "leadsync_db_queue_depth") == 0, 30, "the db queue")
    # where the time of a postback goes: its database job (queue wait,
    # group, commit) against the whole answer
    res["db_jobs"] = db_job_quantiles(jobs0, db_job_buckets(port))
    res["daemon_cpu_s"] = round(daemon.cpu() - cpu_d, 2)
    res["pg_cpu_s"] = round(pg.cpu() - cpu_pg, 2)
    res["seconds"] = seconds
    res["tail_s"] = tail
    return res


def prove(pg, run, res):
    """What the database holds for run, against what wrk was answered."""
    th = res["threads"]
    created_ids = res["ids"]
    dup_ids = res["dup_ids"]
    db = pg.psql("SELECT id, request_id FROM leads WHERE request_id LIKE '%s-%%'" % run)
    db_ids = {int(r[0]) for r in db}
    db_rids = {r[1] for r in db}
    answered = set(created_ids) | set(dup_ids)
    log200, log_created, log_rows, groups = pg.psql(
        "SELECT count(*) FILTER (WHERE http_status = 200 AND query NOT LIKE '%%request_id=%st-%%'),"
        " count(*) FILTER (WHERE outcome = 'created'), count(*), count(DISTINCT xmin::text)"
        " FROM postbacks_in WHERE query LIKE '%%request_id=%s%%'" % (run, run))[0]
    sent_unique = sum(t["sent"] for t in th)
    # real postbacks whose answer wrk never read (cut off when its time was
    # up: none while the tail is longer than every latency); each may have
    # made a lead that no answer accounts for
    cut = sum(t["sent"] + t["repeats"] - t["created"] - t["duplicates"] - t["other"] for t in th)
    unaccounted = len(db_ids - set(created_ids))
    p = {
        "leads_in_db": len(db),
        "distinct_request_ids_in_db": len(db_rids),
        "answered_created": len(created_ids),
        "answered_duplicate": len(dup_ids),
        "unique_request_ids_sent": sent_unique,
        "repeats_sent": sum(t["repeats"] for t in th),
        "tail_sent": sum(t["tails"] for t in th),
        "tail_answered": sum(t["tail_answers"] for t in th),
        # answered 200 naming a lead the database does not hold
        "lost": len(answered - db_ids),
        # a request id with two leads, a lead answered "created" twice (a
        # repeat that created), a lead no "created" answer (nor a cut-off
        # request) accounts for
        "duplicated": (len(db) - len(db_rids)) + (len(created_ids) - len(set(created_ids)))
        + max(0, unaccounted - cut),
        "cut_off_real_requests": cut,
        "leads_without_answer": unaccounted,
        "leads_equal_answered": db_ids == set(created_ids),
        "duplicate_answers_of_unknown_leads": len(set(dup_ids) - set(created_ids)),
        "log_200_rows": int(log200),
        "log_created_rows": int(log_created),
        "log_rows": int(log_rows),
        "log_transactions": int(groups),
    }
    e = res["errors"]
    p["errors"] = e["connect"] + e["read"] + e["write"] + e["timeout"] + \
        sum(t["other"] for t in th)
    # the log agrees: one 200 row per 200 answer, one created row per lead
    p["log_ok"] = (p["log_200_rows"] == len(created_ids) + len(dup_ids) and
                   p["log_created_rows"] == len(db))
    p["mean_group"] = round(p["log_rows"] / max(p["log_transactions"], 1), 1)
    return p


def run_rows(label, res, p):
    lat = res["latency_us"]
    phase = res["seconds"] - res["tail_s"]
    rate = (p["answered_created"] + p["answered_duplicate"]) / phase
    p99 = lat["p99"] / 1000.0
    rows = [
        bl.row("postbacks/s, %s" % label, round(rate), "1/s",
               note="200s per second over %.1f s, wrk -t%d -c%d; mean group %.1f per commit"
               % (phase, THREADS, CONNECTIONS, p["mean_group"])),
        bl.row("p50 latency, %s" % label, round(lat["p50"] / 1000.0, 2), "ms"),
        bl.row("p99 latency, %s" % label, round(p99, 2), "ms", target="<= %g" % P99_TARGET_MS,
               ok=p99 <= P99_TARGET_MS,
               note="the database job (queue wait, group, commit) of a postback: p99 <= %s ms"
               % res["db_jobs"]["p99_le_ms"]),
        bl.row("p99.9 latency, %s" % label, round(lat["p99.9"] / 1000.0, 2), "ms"),
        bl.row("errors, %s" % label, p["errors"], "requests",
               note="socket errors and answers other than 200 (tail 400s excluded)"),
        bl.row("lost, %s" % label, p["lost"], "postbacks", target="= 0", ok=p["lost"] == 0,
               note="answered 200, lead not in the database; log rows %s"
               % ("agree" if p["log_ok"] else "DISAGREE")),
        bl.row("duplicated, %s" % label, p["duplicated"], "leads", target="= 0",
               ok=p["duplicated"] == 0,
               note="%d leads %s %d request ids answered 200; %d repeats answered duplicate"
               % (p["leads_in_db"], "=" if p["leads_equal_answered"] else "!=",
                  p["answered_created"], p["answered_duplicate"])),
    ]
    return rate, rows


def pgpost(pg, total, seconds, batch, prefix):
    out = subprocess.run([os.path.join(bl.BENCH_BIN, "bench_pgpost"), pg.conninfo, str(total),
                          str(seconds), str(batch), str(DB_WORKERS), KEY, str(CLICKS), prefix],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError("bench_pgpost failed: " + out.stderr)
    return json.loads(out.stdout)


def main():
    args = bl.section_args(__doc__.splitlines()[0])
    seconds = bl.scaled(10, args.scale, 2)
    # longer than any latency seen here, so no real postback is cut off
    tail = max(0.3, min(1.0, 0.1 * seconds))
    ceiling_total = bl.scaled(200000, args.scale, 5000)
    ceiling_s = max(1.0, min(6.0, 0.6 * seconds))
    rows, extra = [], {"machine": bl.machine(), "commit": bl.commit(), "scale": args.scale}
    pg = daemon = None
    t_start = time.monotonic()
    try:
        say("starting PostgreSQL")
        pg = bl.PgLocal()
        pg.migrate()
        seed(pg)
        port = bl.free_port()
        daemon = bl.spawn_daemon(pg, listen="127.0.0.1:%d" % port)
        bl.wait_port(port)
        bl.wait_until(lambda: http_get(port, "/readyz")[0] == 200, 30, "the daemon to be ready")

        runs = {}
        for run, label, repeat in (("r1", "unique ids", 0.0), ("r2", "10 % repeats", 0.1)):
            res = wrk_run(port, pg, daemon, run, repeat, seconds, tail)
            p = prove(pg, run, res)
            rate, rr = run_rows(label, res, p)
            rows += rr
            runs[run] = {"rate": rate, "proof": p,
                         "latency_us": res["latency_us"], "wrk_errors": res["errors"],
                         "threads": res["threads"], "daemon_cpu_s": res["daemon_cpu_s"],
                         "pg_cpu_s": res["pg_cpu_s"], "db_jobs": res["db_jobs"],
                         "wrk_stdout": res["wrk_stdout"]}
            say("%s %.0f/s p99 %.1f ms (db job p99 <= %s ms) lost %d duplicated %d"
                % (run, rate, res["latency_us"]["p99"] / 1000.0, res["db_jobs"]["p99_le_ms"],
                   p["lost"], p["duplicated"]))
        extra["runs"] = runs
        extra["daemon_rss_peak_mib"] = round(daemon.rss_peak(), 1)
        daemon.stop()
        daemon = None

        group = max(1, int(round(runs["r1"]["proof"]["mean_group"])))
        say("PostgreSQL alone, %.1f s in groups of %d" % (ceiling_s, group))
        cpu_pg = pg.cpu()
        same = pgpost(pg, ceiling_total, ceiling_s, group, "c1")
        same["pg_cpu_s"] = round(pg.cpu() - cpu_pg, 2)
        say("PostgreSQL alone, groups of %d" % COMMIT_BATCH)
        big = pgpost(pg, ceiling_total, ceiling_s, COMMIT_BATCH, "c2")
        extra["ceiling_same_groups"] = same
        extra["ceiling_groups_500"] = big
        rate1 = runs["r1"]["rate"]
        ratio = rate1 / same["rate"]
        rows.append(bl.row("postbacks/s vs PostgreSQL", round(rate1), "1/s",
                           ceiling=round(same["rate"]),
                           ceiling_name="PostgreSQL, same rows, groups of %d, %d conns"
                           % (group, DB_WORKERS),
                           ratio=round(ratio, 2), target=">= %g" % RATIO_TARGET,
                           ok=ratio >= RATIO_TARGET,
                           note="bench_pgpost: postback.c's statements, nothing else"))
        rows.append(bl.row("PostgreSQL, groups of %d" % COMMIT_BATCH, round(big["rate"]), "1/s",
                           note="the same rows in the largest group one commit may take"))
    finally:
        if daemon:
            daemon.stop()
        if pg:
            pg.close()
        say("done")
    extra["section_seconds"] = round(time.monotonic() - t_start, 1)
    bl.write_section(args.out, "postbacks", "Postback ingestion (wrk -t2 -c64, GET /{key}/s2s)",
                     rows, extra)
    for r in rows:
        bl.log("  %-36s %10s %s %s" % (r["name"], r["value"], r["unit"],
                                        "" if "ok" not in r else ("ok" if r["ok"] else "MISS")))


if __name__ == "__main__":
    main()
