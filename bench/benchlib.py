"""benchlib: what every benchmark section (bench/sec_*.py) shares.

A section starts its own private PostgreSQL (PgLocal), its daemons and
mocks, on loopback only, and cleans them up even when it fails. CPU time
is read from /proc (utime + stime, in seconds), peak memory from VmHWM, so
the figures are the processes' own, whatever else the machine is doing.
Sections write their JSON with write_section(); bench/run.py merges them.
"""
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# LEADSYNC_BIN: another build to measure (an older commit's, for a before
# and after); its migrations are the ones it applies.
LEADSYNC = os.environ.get("LEADSYNC_BIN") or os.path.join(ROOT, "build", "leadsync")
BENCH_BIN = os.path.join(ROOT, "build", "bench")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Server settings of the benchmark's PostgreSQL: durable (fsync and
# synchronous_commit on, as in production), with the memory and WAL room a
# server with a million leads would be given; checkpoints far apart so a
# run measures the writes, not a checkpoint that happens to fall in it.
PG_BENCH_OPTS = ("-c shared_buffers=1GB -c max_wal_size=8GB -c checkpoint_timeout=30min"
                 " -c wal_buffers=16MB -c work_mem=32MB -c maintenance_work_mem=256MB")


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def scaled(n, scale, minimum=1):
    """n scaled by BENCH_SCALE, never below minimum."""
    return max(int(round(n * scale)), minimum)


class PgLocal:
    """A private PostgreSQL cluster in a temporary folder (scripts/pg-local)."""

    def __init__(self, extra_opts=PG_BENCH_OPTS):
        self.dir = tempfile.mkdtemp(prefix="leadsync-bench-pg-")
        env = dict(os.environ, PG_EXTRA_OPTS=extra_opts)
        out = subprocess.run([os.path.join(ROOT, "scripts", "pg-local"), "start", self.dir],
                             env=env, check=True, capture_output=True, text=True)
        self.conninfo = out.stdout.strip()

    def psql(self, sql, db_input=None):
        """Runs sql; returns the rows of the last statement as lists of strings."""
        out = subprocess.run(["psql", self.conninfo, "-X", "-q", "-A", "-t", "-F", "\t",
                              "-v", "ON_ERROR_STOP=1", "-c", sql],
                             check=True, capture_output=True, text=True, input=db_input)
        return [line.split("\t") for line in out.stdout.splitlines() if line != ""]

    def psql_file(self, path):
        subprocess.run(["psql", self.conninfo, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", path],
                       check=True, capture_output=True, text=True)

    def value(self, sql):
        rows = self.psql(sql)
        return rows[0][0] if rows else None

    def migrate(self):
        subprocess.run([LEADSYNC, "migrate"], env=dict(os.environ, LEADSYNC_DB=self.conninfo),
                       check=True, capture_output=True, text=True)

    def postmaster_pid(self):
        with open(os.path.join(self.dir, "data", "postmaster.pid")) as f:
            return int(f.readline())

    def cpu(self):
        """CPU seconds of the whole cluster so far: the postmaster, its
        children alive now, and the children it has reaped."""
        pm = self.postmaster_pid()
        total = proc_cpu(pm, children=True)
        for pid in _children(pm):
            total += proc_cpu(pid)
        return total

    def wal_lsn(self):
        return int(self.value("SELECT pg_current_wal_lsn() - '0/0'"))

    def close(self):
        subprocess.run([os.path.join(ROOT, "scripts", "pg-local"), "destroy", self.dir],
                       capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def _stat(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    # the command name is in parentheses and may hold spaces
    return s[s.rindex(")") + 2:].split()


def _children(ppid):
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if int(_stat(int(d))[1]) == ppid:
                    kids.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return kids


def proc_cpu(pid, children=False):
    """utime + stime of pid in seconds (plus its reaped children's)."""
    try:
        f = _stat(pid)
    except OSError:
        return 0.0
    # fields after the name: state=0 ppid=1 ... utime=11 stime=12 cutime=13 cstime=14
    t = int(f[11]) + int(f[12])
    if children:
        t += int(f[13]) + int(f[14])
    return t / CLK_TCK


def proc_rss_peak(pid):
    """Peak resident memory (VmHWM) of pid in MiB; 0 when gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=30.0):
    wait_until(lambda: _connects(port), timeout, "port %d to listen" % port)


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_until(fn, timeout, what="condition", interval=0.05):
    """Polls fn() until it is true; raises after timeout seconds."""
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            raise TimeoutError("bench: timed out waiting for " + what)
        time.sleep(interval)


class Proc:
    """A child process whose output goes to a log file; stopped on exit."""

    def __init__(self, argv, env=None, name="proc"):
        self.name = name
        self.logf = tempfile.NamedTemporaryFile(prefix="leadsync-bench-%s-" % name,
                                                suffix=".log", delete=False)
        self.p = subprocess.Popen(argv, env=env, stdout=self.logf, stderr=subprocess.STDOUT)
        self.pid = self.p.pid

    def cpu(self):
        return proc_cpu(self.pid)

    def rss_peak(self):
        return proc_rss_peak(self.pid)

    def alive(self):
        return self.p.poll() is None

    def tail(self, n=20):
        with open(self.logf.name, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def stop(self, timeout=30):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.logf.close()
        os.unlink(self.logf.name)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()


def daemon_env(pg, **settings):
    """The environment of a `leadsync run` on pg: settings as LEADSYNC_NAME=value
    (e.g. listen="127.0.0.1:9", crm_per_host=256)."""
    env = dict(os.environ, LEADSYNC_DB=pg.conninfo, LEADSYNC_LOG_LEVEL="warn")
    for k, v in settings.items():
        env["LEADSYNC_" + k.upper()] = str(v)
    return env


def spawn_daemon(pg, **settings):
    return Proc([LEADSYNC, "run"], env=daemon_env(pg, **settings), name="daemon")


def machine():
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) // 1024
    except OSError:
        pass
    return {"cores": os.cpu_count(), "model": model, "memory_mib": mem,
            "kernel": platform.release()}


def commit():
    try:
        out = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def row(name, value, unit, ceiling=None, ceiling_name=None, ratio=None, target=None,
        ok=None, note=None):
    """One line of the table (see bench/run.py for the columns)."""
    r = {"name": name, "value": value, "unit": unit}
    for k, v in (("ceiling", ceiling), ("ceiling_name", ceiling_name), ("ratio", ratio),
                 ("target", target), ("ok", ok), ("note", note)):
        if v is not None:
            r[k] = v
    return r


def section_args(description):
    import argparse
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--scale", type=float,
                    default=float(os.environ.get("BENCH_SCALE", "1") or 1))
    ap.add_argument("--out", required=True)
    return ap.parse_args()


def write_section(out, section, title, rows, extra=None):
    with open(out, "w") as f:
        json.dump({"section": section, "title": title, "rows": rows, "extra": extra or {}},
                  f, indent=1)
        f.write("\n")
