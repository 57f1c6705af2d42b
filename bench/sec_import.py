"""sec_import: `leadsync import` of 10,000 offers x 100 leads (a million),
beside PostgreSQL's own COPY of the same leads straight into `leads`.

    python3 bench/sec_import.py --scale S --out FILE.json

The file holds one advertiser, offers with the json_setstc rule and a goal
each, then the leads (ext, status 2, created, every other one a goal, base),
in the order an export gives them. The import runs on a fresh private
PostgreSQL; the ceiling is a COPY of the same leads, in COPY's own format,
into `leads` of a second freshly migrated database holding the same offers
and goals: the same indexes, the same foreign keys, no history, no merge.
"""
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

LEADS_PER_OFFER = 100
TARGET_S = 20.0  # at scale 1 (issue 10)
COPY_COLS = "id, offer, ext, status, created, goal, base"


def lead_values(n):
    """The fields of lead n (1-based), the same for the import and the COPY."""
    created = "2026-11-%02dT%02d:%02d:%02dZ" % (1 + n % 28, n % 24, n % 60, (n * 7) % 60)
    return "E%d" % n, created, n % 2 == 1, "%d.%02d" % (n % 500, n % 100)


def write_import(path, offers):
    with open(path, "w") as f:
        f.write('{"advertiser": {"id": 1, "name": "Bench network", "api_key": "bench-key"}}\n')
        for o in range(1, offers + 1):
            f.write('{"offer": {"id": %d, "advertiser": 1, "name": "offer %d", "rule":'
                    ' "json_setstc", "params": {"host": "127.0.0.1:9", "key": "k"}}}\n' % (o, o))
            f.write('{"goal": {"offer": %d, "code": "sale", "payout": "fixed",'
                    ' "currency": "USD", "wm": 10, "pay": 12}}\n' % o)
        n = 0
        for o in range(1, offers + 1):
            for _ in range(LEADS_PER_OFFER):
                n += 1
                ext, created, goal, base = lead_values(n)
                f.write('{"lead": {"offer": %d, "ext": "%s", "status": 2, "created": "%s",'
                        ' "goal": %s, "base": %s}}\n'
                        % (o, ext, created, '"sale"' if goal else "null", base))
    return n


def write_copy(path, offers, goal_of):
    """The same leads in COPY text format, with the ids the import drew."""
    with open(path, "w") as f:
        n = 0
        for o in range(1, offers + 1):
            for _ in range(LEADS_PER_OFFER):
                n += 1
                ext, created, goal, base = lead_values(n)
                f.write("%d\t%d\t%s\t2\t%s\t%s\t%s\n"
                        % (n, o, ext, created, goal_of[o] if goal else "\\N", base))


def timed(argv, env, stdin=None):
    """Runs argv; returns (wall seconds, CPU seconds of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.run(argv, env=env, stdin=stdin, capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise RuntimeError("%s failed: %s%s" % (argv[0], p.stdout, p.stderr))
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    args = bl.section_args(__doc__.splitlines()[0])
    offers = bl.scaled(10000, args.scale, 50)
    target = round(TARGET_S * args.scale, 2)
    tmp = tempfile.mkdtemp(prefix="leadsync-bench-import-")
    try:
        src = os.path.join(tmp, "leads.jsonl")
        bl.log("import: writing %d offers x %d leads" % (offers, LEADS_PER_OFFER))
        leads = write_import(src, offers)
        with bl.PgLocal() as pg:
            pg.migrate()
            env = dict(os.environ, LEADSYNC_DB=pg.conninfo)
            pg.psql("CHECKPOINT")
            bl.log("import: leadsync import of %d leads" % leads)
            cpu0 = pg.cpu()
            wall, ls_cpu = timed([bl.LEADSYNC, "import", src], env)
            pg_cpu = pg.cpu() - cpu0
            got = int(pg.value("SELECT count(*) FROM leads"))
            hist = int(pg.value("SELECT count(*) FROM lead_history"))
            if got != leads or hist != leads:
                raise RuntimeError("import wrote %d leads, %d history rows, want %d"
                                   % (got, hist, leads))

            # The ceiling: the offers and goals imported into a second
            # database, then the leads alone by COPY.
            bl.log("import: COPY ceiling")
            pg.psql("CREATE DATABASE ceiling")
            cenv = dict(os.environ, LEADSYNC_DB=pg.conninfo + " dbname=ceiling")
            subprocess.run([bl.LEADSYNC, "migrate"], env=cenv, check=True, capture_output=True)
            head = os.path.join(tmp, "offers.jsonl")
            with open(src) as f, open(head, "w") as h:
                for line in f:
                    if line.startswith('{"lead"'):
                        break
                    h.write(line)
            timed([bl.LEADSYNC, "import", head], cenv)
            goal_of = {int(o): g for o, g in
                       (r for r in _rows(pg, "ceiling", "SELECT offer, id FROM goals"))}
            cfile = os.path.join(tmp, "leads.copy")
            write_copy(cfile, offers, goal_of)
            pg.psql("CHECKPOINT")
            cpu0 = pg.cpu()
            with open(cfile) as f:
                copy_wall, _ = timed(["psql", pg.conninfo + " dbname=ceiling", "-X", "-q",
                                      "-v", "ON_ERROR_STOP=1", "-c",
                                      "COPY leads (%s) FROM STDIN" % COPY_COLS], None, stdin=f)
            copy_cpu = pg.cpu() - cpu0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    ratio = round(wall / copy_wall, 2)
    note = "%d leads; target 20 s x scale %g" % (leads, args.scale) if args.scale != 1 else \
        "%d leads" % leads
    rows = [
        bl.row("import wall time", round(wall, 2), "s", ceiling=round(copy_wall, 2),
               ceiling_name="COPY into leads", ratio=ratio, target="<= %g s" % target,
               ok=wall <= target, note=note),
        bl.row("import rate", round(leads / wall), "leads/s"),
        bl.row("import PostgreSQL CPU", round(pg_cpu, 2), "s"),
        bl.row("import leadsync CPU", round(ls_cpu, 2), "s"),
        bl.row("COPY into leads (ceiling)", round(copy_wall, 2), "s",
               note="same leads and indexes, no history; PostgreSQL CPU %.1f s" % copy_cpu),
    ]
    bl.write_section(args.out, "import", "leadsync import of %d offers x %d leads"
                     % (offers, LEADS_PER_OFFER), rows,
                     {"offers": offers, "leads": leads, "scale": args.scale,
                      "import_wall_s": wall, "import_pg_cpu_s": pg_cpu,
                      "import_leadsync_cpu_s": ls_cpu, "copy_wall_s": copy_wall,
                      "copy_pg_cpu_s": copy_cpu, "machine": bl.machine(),
                      "commit": bl.commit()})
    bl.log("import: %.1f s (COPY %.1f s, ratio %.2f), PostgreSQL CPU %.1f s, leadsync CPU %.1f s"
           % (wall, copy_wall, ratio, pg_cpu, ls_cpu))


def _rows(pg, db, sql):
    out = subprocess.run(["psql", pg.conninfo + " dbname=" + db, "-X", "-q", "-A", "-t", "-F",
                          "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         check=True, capture_output=True, text=True)
    return [line.split("\t") for line in out.stdout.splitlines() if line]


if __name__ == "__main__":
    main()
