#!/usr/bin/env python3
"""sec_rule: the cost per lead of decode + the rule's `process` (item 3).

build/bench/bench_rule over one JSON answer of 1,000,000 leads (scaled)
with the setstc one-liner, beside the baselines measured in the same run:
cJSON's own parse of the same answer and our decode alone. Then the
instructions per lead from callgrind on 100,000 leads (scaled), counted
inside the measured step only (--toggle-collect), which do not depend on
how busy the machine is. Target: rule cost <= 1.5x the cJSON parse.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

BIN = os.path.join(B.BENCH_BIN, "bench_rule")


def callgrind_ir(n, step):
    """Instructions inside bench_only() for one step over n leads."""
    fd, out = tempfile.mkstemp(prefix="leadsync-bench-cg-")
    os.close(fd)
    try:
        subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                        "--toggle-collect=bench_only", BIN, str(n), "--only", step],
                       check=True, capture_output=True, text=True)
        with open(out) as f:
            for line in f:
                m = re.match(r"(summary|totals): (\d+)", line)
                if m:
                    return int(m.group(2))
    finally:
        os.unlink(out)
    raise RuntimeError("callgrind wrote no total")


def main():
    a = B.section_args(__doc__)
    n = B.scaled(1000000, a.scale, 20000)
    n_cg = B.scaled(100000, a.scale, 10000)
    B.log("rule: decode + process of %d leads" % n)
    out = subprocess.run([BIN, str(n), "--json"], check=True, capture_output=True, text=True)
    f = json.loads(out.stdout.strip().splitlines()[-1])
    ratio = f["rule_none_ns"] / f["parse_ns"]
    ratio_all = f["rule_all_ns"] / f["parse_ns"]
    rows = [
        B.row("rule: cJSON parse of the answer (baseline)", round(f["parse_ns"]), "ns/lead"),
        B.row("rule: decode to Lua only (baseline)", round(f["decode_ns"]), "ns/lead"),
        B.row("rule: decode from windows-1251", round(f["decode_cp1251_ns"]), "ns/lead",
              ratio=round(f["decode_cp1251_ns"] / f["decode_ns"], 2),
              note="ratio to decode from UTF-8"),
        B.row("rule: decode + process, none change", round(f["rule_none_ns"]), "ns/lead",
              ceiling=round(f["parse_ns"]), ceiling_name="cJSON parse", ratio=round(ratio, 2),
              target="<= 1.5", ok=ratio <= 1.5),
        B.row("rule: decode + process, all change", round(f["rule_all_ns"]), "ns/lead",
              ceiling=round(f["parse_ns"]), ceiling_name="cJSON parse",
              ratio=round(ratio_all, 2), target="<= 1.5", ok=ratio_all <= 1.5,
              note="batches of 1000"),
    ]
    extra = {"bench_rule": f}
    if shutil.which("valgrind"):
        B.log("rule: callgrind over %d leads" % n_cg)
        ir_rule = callgrind_ir(n_cg, "rule") / n_cg
        ir_parse = callgrind_ir(n_cg, "parse") / n_cg
        rows.append(B.row("rule: instructions, decode + process", round(ir_rule), "instr/lead",
                          ceiling=round(ir_parse), ceiling_name="cJSON parse",
                          ratio=round(ir_rule / ir_parse, 2),
                          note="callgrind, %d leads" % n_cg))
        extra["callgrind_leads"] = n_cg
    else:
        rows.append(B.row("rule: instructions, decode + process", 0, "instr/lead",
                          note="valgrind not installed: not measured"))
    B.write_section(a.out, "rule", "Rule cost (decode + process)", rows, extra)


if __name__ == "__main__":
    main()
