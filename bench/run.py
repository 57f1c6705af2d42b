#!/usr/bin/env python3
"""run.py: `make bench`. Runs every benchmark section (bench/sec_*.py), each
on its own private PostgreSQL over loopback, prints one table, writes
bench/results.json (figures, ceilings, ratios, the commit, the machine) and,
after a full-scale run, the table in bench/BENCHMARKS.md.

    python3 bench/run.py [--scale S] [--only NAME,...] [--results FILE] [--no-md]
    python3 bench/run.py --md-only      # BENCHMARKS.md's table from results.json

A section that fails is reported in the table and in results.json with its
error; the run then exits 1, after the others have run. --scale (BENCH_SCALE)
scales every size; the table in BENCHMARKS.md is only ever the last run at
scale 1, so a quick run never replaces it.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ORDER = ["pass", "growth", "postbacks", "import", "rule"]
MD = os.path.join(HERE, "BENCHMARKS.md")
MD_BEGIN = "<!-- bench:begin -->"
MD_END = "<!-- bench:end -->"


def sections(only):
    found = sorted(f[4:-3] for f in os.listdir(HERE) if f.startswith("sec_") and f.endswith(".py"))
    names = [s for s in ORDER if s in found] + [s for s in found if s not in ORDER]
    if only:
        unknown = [s for s in only if s not in names]
        if unknown:
            sys.exit("bench: no section %s (there are: %s)" % (", ".join(unknown), ", ".join(names)))
        names = [s for s in names if s in only]
    return names


def run_section(name, scale):
    fd, out = tempfile.mkstemp(prefix="leadsync-bench-%s-" % name, suffix=".json")
    os.close(fd)
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, os.path.join(HERE, "sec_%s.py" % name),
                            "--scale", str(scale), "--out", out],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           cwd=B.ROOT)
        sys.stderr.write(p.stdout)
        if p.returncode != 0:
            tail = "\n".join(p.stdout.strip().splitlines()[-8:])
            return {"section": name, "error": "exit %d: %s" % (p.returncode, tail), "rows": []}
        with open(out) as f:
            res = json.load(f)
    except (OSError, ValueError) as e:
        return {"section": name, "error": str(e), "rows": []}
    finally:
        os.unlink(out)
    res["seconds"] = round(time.monotonic() - t0, 1)
    return res


def fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        if v != 0 and abs(v) < 10:
            return "%.2f" % v
        return "%.1f" % v if abs(v) < 1000 else "{:,.0f}".format(v)
    if isinstance(v, int):
        return "{:,}".format(v)
    return str(v)


def table(res):
    """The rows of every section as (figure, value, ceiling, ratio, target, verdict)."""
    lines = []
    for s in res["sections"]:
        if s.get("error"):
            lines.append((s["section"] + ": FAILED", s["error"].splitlines()[-1][:70],
                          "", "", "", "FAILED"))
            continue
        for r in s["rows"]:
            ceil = ""
            if r.get("ceiling") is not None:
                ceil = "%s %s" % (fmt(r["ceiling"]), r.get("ceiling_name", ""))
            verdict = "" if "ok" not in r else ("met" if r["ok"] else "MISSED")
            lines.append((r["name"], "%s %s" % (fmt(r["value"]), r["unit"]), ceil.strip(),
                          fmt(r.get("ratio")), r.get("target", ""), verdict))
    return lines


def print_table(res):
    head = ("figure", "value", "ceiling (same run)", "ratio", "target", "")
    lines = table(res)
    w = [max(len(str(x[i])) for x in lines + [head]) for i in range(len(head))]
    print("leadsync bench: commit %s, scale %s, %s, %d cores, %d MiB, %s" % (
        res["commit"], res["scale"], res["machine"]["model"], res["machine"]["cores"],
        res["machine"]["memory_mib"], res["date"]))
    for x in [head, tuple("-" * n for n in w)] + lines:
        print("  ".join(str(c).ljust(w[i]) for i, c in enumerate(x)).rstrip())


def write_md(res):
    m = res["machine"]
    out = ["", "Last full run: commit `%s`, %s; %s, %d cores, %d MiB; %.0f s in all." % (
        res["commit"], res["date"], m["model"], m["cores"], m["memory_mib"], res["seconds"]), "",
        "| figure | value | ceiling (same run) | ratio | target | |",
        "|---|---|---|---|---|---|"]
    for x in table(res):
        out.append("| " + " | ".join(str(c).replace("|", "/") for c in x) + " |")
    out.append("")
    with open(MD) as f:
        text = f.read()
    a, b = text.index(MD_BEGIN) + len(MD_BEGIN), text.index(MD_END)
    with open(MD, "w") as f:
        f.write(text[:a] + "\n".join(out) + "\n" + text[b:])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=float(os.environ.get("BENCH_SCALE") or 1))
    ap.add_argument("--only", default=os.environ.get("BENCH_ONLY", ""),
                    help="comma-separated sections (BENCH_ONLY)")
    ap.add_argument("--results", default=os.path.join(HERE, "results.json"))
    ap.add_argument("--no-md", action="store_true", help="leave BENCHMARKS.md alone")
    ap.add_argument("--md-only", action="store_true",
                    help="only regenerate BENCHMARKS.md's table from --results")
    a = ap.parse_args()
    if a.md_only:
        with open(a.results) as f:
            write_md(json.load(f))
        return 0
    if a.scale <= 0:
        sys.exit("bench: --scale must be above 0")
    names = sections([s for s in a.only.split(",") if s])
    t0 = time.monotonic()
    res = {"commit": B.commit(), "date": datetime.datetime.now(datetime.timezone.utc)
           .strftime("%Y-%m-%dT%H:%M:%SZ"), "scale": a.scale, "machine": B.machine(),
           "sections": []}
    for name in names:
        B.log("section %s (scale %s)" % (name, a.scale))
        res["sections"].append(run_section(name, a.scale))
    res["seconds"] = round(time.monotonic() - t0, 1)
    with open(a.results, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    print_table(res)
    print("results: %s (%.0f s)" % (os.path.relpath(a.results), res["seconds"]))
    if a.scale == 1 and not a.only and not a.no_md:
        write_md(res)
        print("table written to %s" % os.path.relpath(MD))
    failed = [s["section"] for s in res["sections"] if s.get("error")]
    if failed:
        print("bench: failed sections: %s" % ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
