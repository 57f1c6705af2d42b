#!/usr/bin/env python3
"""soak: two daemons on one database for minutes, under a hostile CRM and a
stream of postbacks, then the invariants (issue 13 item 3).

    SOAK_SECONDS=600 make soak        (or: python3 bench/soak.py [SECONDS])

Loopback only, bounded by SOAK_SECONDS (default 600). One private
PostgreSQL (scripts/pg-local), two `leadsync run` daemons on it (ports of
their own), a mock CRM in this process that at random times out, answers
500, 429 with Retry-After, garbage, oversized answers, or new statuses;
postback clients that send new conversions, exact repeats, concurrent
repeats of one request_id to both daemons, status updates and chargebacks
of the polled leads, and bad requests, recording every answer. At 35 %
of the run PostgreSQL is stopped and started again on the same folder; at
60 % one daemon gets kill -9 and is started again. At the end every
invariant is printed with its figures; the exit status is 1 when one
fails. The work folder (daemon logs, PostgreSQL log) is kept when one
fails and printed.
"""
import collections
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

POLLED_OFFERS = 20        # offers 1..20, polled through bench/rules/soak_crm.lua
LEADS_PER_OFFER = 30      # seeded leads with ext, request_id and click each
PB_OFFERS = {101: "lead", 102: "sale"}   # postback-only offers of advertiser 1: goal
OTHER_OFFER = 201         # advertiser 2's offer (its clicks are refused with key 1)
CLICKS = 200              # per postback offer
KEY1, KEY2 = "k-soak-one", "k-soak-two"
CRM_KEY = "crm-soak-key"
CLIENTS = 6               # postback client threads
CRM_TIMEOUT = 2           # LEADSYNC_CRM_TIMEOUT; the mock's timeouts sleep longer
CRM_MAX_MB = 1            # LEADSYNC_CRM_MAX_MB; the mock's oversized answers exceed it

T0 = time.monotonic()


def say(msg):
    print("soak: %6.1f s %s" % (time.monotonic() - T0, msg), file=sys.stderr, flush=True)


# ------------------------------------------------------------ mock CRM

# (weight, word): what the CRM says a lead is; includes words that would
# move a lead backwards or out of a closed status, which the daemon must
# refuse, and a word nobody knows.
CRM_WORDS = [(8, "processing"), (6, "callback"), (3, "no answer"), (4, "hold"),
             (5, "approved"), (2, "packed"), (3, "shipped"), (2, "delivered"), (3, "paid"),
             (2, "returned"), (3, "cancelled"), (1, "trash"), (1, "fraud"), (1, "deleted"),
             (1, "new"), (1, "2"), (1, "10"), (1, "zzz unknown")]
# (weight, behaviour) of one answer
CRM_FAULTS = [(60, "ok"), (8, "timeout"), (8, "500"), (8, "429"), (8, "garbage"),
              (4, "oversized"), (4, "wrongshape")]


def pick(table, rnd=random):
    total = sum(w for w, _ in table)
    x = rnd.uniform(0, total)
    for w, v in table:
        x -= w
        if x <= 0:
            return v
    return table[-1][1]


class MockCRM:
    """GET /api/orders?ids=E1,E2&key=K or ?from=..&to=..&key=K on its own
    threads; the dates form answers a random handful of the known ids."""

    def __init__(self, known_ext):
        self.known = list(known_ext)
        self.counts = collections.Counter()
        self.lock = threading.Lock()
        mock = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def handle(self):
                try:
                    super().handle()
                except OSError:
                    pass  # the daemon gave up on a slow answer: its timeout at work

            def do_GET(self):
                mock.answer(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = "127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, what):
        with self.lock:
            self.counts[what] += 1

    def send(self, h, code, body, ctype="application/json", headers=()):
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def answer(self, h):
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(h.path).query)
        if q.get("key") != [CRM_KEY]:
            self.count("bad_key")
            self.send(h, 403, b'{"error":"key"}')
            return
        fault = pick(CRM_FAULTS)
        self.count(fault)
        if fault == "timeout":
            time.sleep(CRM_TIMEOUT + 1.5)
            self.send(h, 200, b"[]")
        elif fault == "500":
            self.send(h, 500, b"internal error")
        elif fault == "429":
            self.send(h, 429, b'{"error":"slow down"}', headers=[("Retry-After", "1")])
        elif fault == "garbage":
            self.send(h, 200, bytes(random.getrandbits(8) for _ in range(random.randint(1, 300))))
        elif fault == "oversized":
            self.send(h, 200, b"[" + b'{"id":"X","status":"paid"},' * (CRM_MAX_MB * 40000) + b"{}]")
        elif fault == "wrongshape":
            self.send(h, 200, random.choice([b'{"orders":1}', b'[1,2,"x"]', b'[{"id":{}}]', b"null"]))
        else:
            if "ids" in q:
                ids = [i for i in q["ids"][0].split(",") if i]
            else:
                ids = random.sample(self.known, min(len(self.known), random.randint(0, 40)))
            items = [{"id": i, "status": pick(CRM_WORDS)} for i in ids]
            self.send(h, 200, json.dumps(items).encode())

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------ database

def seed(pg, crm_host):
    """Advertisers, offers, goals, clicks and the polled leads, each lead
    with the creation row of its history that the daemon would write."""
    params = json.dumps({"host": crm_host, "key": CRM_KEY}).replace("'", "''")
    pg.psql(
        "INSERT INTO advertisers (id, name, api_key) VALUES (1, 'Soak one', '%(k1)s'),"
        " (2, 'Soak two', '%(k2)s');"
        "INSERT INTO offers (id, advertiser, name, rule, params, secret_params,"
        " interval_processing, interval_accepted, interval_dates, hold_days)"
        " SELECT g, 1, 'Polled ' || g, 'soak_crm', '%(params)s', '{key}', 2, 3, 5, 0"
        " FROM generate_series(1, %(polled)d) g;"
        "INSERT INTO offers (id, advertiser, name, hold_days) VALUES"
        " (101, 1, 'Postbacks fixed', 0), (102, 1, 'Postbacks percent', 0),"
        " (%(other)d, 2, 'Other advertiser', 0);"
        "INSERT INTO goals (offer, code, payout, wm, pay, ref, currency)"
        " SELECT g, 'lead', 'fixed', 5, 8, 1, 840 FROM generate_series(1, %(polled)d) g;"
        "INSERT INTO goals (offer, code, payout, wm, pay, ref, currency) VALUES"
        " (101, 'lead', 'fixed', 5, 8, 0, 840), (102, 'sale', 'percent', 10, 15, 1, 840),"
        " (%(other)d, 'lead', 'fixed', 5, 8, 0, 840);"
        "INSERT INTO clicks (id, offer) SELECT gen_random_uuid(), o"
        " FROM unnest(ARRAY[101, 102, %(other)d]) o, generate_series(1, %(clicks)d);"
        "INSERT INTO clicks (id, offer) SELECT ('00000000-0000-4000-8000-'"
        " || lpad(to_hex(g), 12, '0'))::uuid, (g - 1) / %(per)d + 1"
        " FROM generate_series(1, %(n)d) g;"
        "INSERT INTO leads (id, offer, ext, request_id, click, goal, status, curr, created)"
        " SELECT g, (g - 1) / %(per)d + 1, 'E' || g, 'R' || g,"
        " ('00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid,"
        " (SELECT id FROM goals WHERE offer = (g - 1) / %(per)d + 1), 2, 840,"
        " now() - (g %% 10) * interval '1 day'"
        " FROM generate_series(1, %(n)d) g;"
        "SELECT setval(pg_get_serial_sequence('leads', 'id'), 100000);"
        "INSERT INTO lead_history (lead, source, after)"
        " SELECT l.id, 'import', c.after FROM leads l, lead_changes(NULL, lead_fields(l)) c;"
        % {"k1": KEY1, "k2": KEY2, "params": params, "polled": POLLED_OFFERS,
           "other": OTHER_OFFER, "clicks": CLICKS, "per": LEADS_PER_OFFER,
           "n": POLLED_OFFERS * LEADS_PER_OFFER})
    clicks = collections.defaultdict(list)
    for offer, click in pg.psql("SELECT offer, id FROM clicks WHERE offer > 100"):
        clicks[int(offer)].append(click)
    seeded = {int(i): (int(o), c) for i, o, c in
              pg.psql("SELECT id, offer, click FROM leads ORDER BY id")}
    return clicks, seeded


def json_rows(pg, sql):
    """The rows of sql (one json value per row) as Python values."""
    out = subprocess.run(["psql", pg.conninfo, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                          "-c", sql], check=True, capture_output=True, text=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


# ------------------------------------------------------------ daemons

class Daemon:
    """One `leadsync run`, its log in the work folder, restartable."""

    def __init__(self, name, pg, port, work):
        self.name, self.pg, self.port, self.work = name, pg, port, work
        self.lives = []  # (pid, log path, started, ended)
        self.p = None
        self.start()

    def start(self):
        path = os.path.join(self.work, "%s.%d.log" % (self.name, len(self.lives)))
        env = bl.daemon_env(self.pg, listen="127.0.0.1:%d" % self.port,
                            rules=os.path.join(bl.ROOT, "bench", "rules"), log_level="info",
                            crm_timeout=CRM_TIMEOUT, crm_max_mb=CRM_MAX_MB, poll_lease=5,
                            poll_backoff_min=1, poll_backoff_max=4, timer_interval=1)
        with open(path, "wb") as logf:
            self.p = subprocess.Popen([bl.LEADSYNC, "run"], env=env, stdout=logf,
                                      stderr=subprocess.STDOUT)
        self.lives.append([self.p.pid, path, time.monotonic(), None])
        bl.wait_port(self.port)

    def kill9(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait()
        self.lives[-1][3] = time.monotonic()

    def stop(self):
        if self.p and self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        if self.lives and self.lives[-1][3] is None:
            self.lives[-1][3] = time.monotonic()


def proc_sample(pid):
    """(RSS in KiB, open fds) of pid, or None when it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return rss, len(os.listdir("/proc/%d/fd" % pid))
    except (OSError, StopIteration):
        return None


# ------------------------------------------------------------ postbacks

class Recorder:
    """Every postback sent and its answer."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = []   # dicts: seq kind port daemon offer rid code lead dup t t_end
        self.seq = 0

    def next_seq(self):
        with self.lock:
            self.seq += 1
            return self.seq

    def add(self, rec):
        with self.lock:
            self.sent.append(rec)


def http_call(port, method, target, body=None, ctype=None, timeout=15):
    """(status, parsed JSON or None); status 0 when no answer came."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        headers = {"Content-Type": ctype} if ctype else {}
        c.request(method, target, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        c.close()
        try:
            return r.status, json.loads(data) if data else None
        except ValueError:
            return r.status, None
    except (OSError, http.client.HTTPException):
        return 0, None


HOLD_WORDS = ["hold", "processing", "pending", "new", "accepted"]
APPROVED_WORDS = ["approved", "confirmed", "paid", "sold", "completed"]
REJECTED_WORDS = ["rejected", "cancelled", "refund", "spam", "test", "declined"]


class Stream:
    """The postback clients: each thread picks a kind of request at random."""

    KINDS = [(30, "new"), (10, "repeat"), (6, "concurrent"), (25, "update"), (12, "bad"),
             (5, "post_json"), (5, "post_form")]

    def __init__(self, ports, clicks, seeded, rec, stop_at):
        self.ports, self.clicks, self.seeded, self.rec = ports, clicks, seeded, rec
        self.stop_at = stop_at
        self.done_ok = []  # (port, method, target, body, ctype) answered 200: for repeats
        self.lock = threading.Lock()

    def send(self, kind, port, method, target, offer, rid, body=None, ctype=None):
        seq = self.rec.next_seq()
        # a marker the incoming-postback log keeps (query or body), ignored by the daemon
        if body is None:
            target += "&soak=%d" % seq
        elif ctype == "application/json":
            body = body[:-1] + ',"soak":"%d"}' % seq
        else:
            body += "&soak=%d" % seq
        t = time.monotonic()
        code, ans = http_call(port, method, target, body.encode() if body else None, ctype)
        lead = ans.get("lead") if isinstance(ans, dict) else None
        dup = ans.get("duplicate") if isinstance(ans, dict) else None
        self.rec.add({"seq": seq, "kind": kind, "port": port, "daemon": "ab"[self.ports.index(port)],
                      "offer": offer, "rid": rid,
                      "code": code, "lead": lead, "dup": dup, "t": t, "t_end": time.monotonic()})
        if code == 200 and body is None:
            with self.lock:
                self.done_ok.append((port, method, target.rsplit("&soak=", 1)[0], offer, rid))
                if len(self.done_ok) > 5000:
                    del self.done_ok[:1000]
        return code

    def s2s(self, offer, click, rid, status, key=KEY1, price=None):
        q = {"click_id": click, "request_id": rid, "action": PB_OFFERS.get(offer, "lead"),
             "status": status}
        if price is not None:
            q["price"] = price
        return "/%s/s2s?%s" % (key, urllib.parse.urlencode(q))

    def new_request(self, rnd):
        offer = rnd.choice(list(PB_OFFERS))
        rid = "S%d-%d" % (offer, self.rec.next_seq())
        word = rnd.choice(HOLD_WORDS + APPROVED_WORDS + REJECTED_WORDS[:2])
        price = "%d.%02d" % (rnd.randint(1, 500), rnd.randint(0, 99)) if offer == 102 else None
        return offer, rid, self.s2s(offer, rnd.choice(self.clicks[offer]), rid, word, price=price)

    def one(self, rnd):
        kind = pick(self.KINDS, rnd)
        port = rnd.choice(self.ports)
        if kind == "new":
            offer, rid, target = self.new_request(rnd)
            self.send(kind, port, "GET", target, offer, rid)
        elif kind == "repeat":
            with self.lock:
                prev = rnd.choice(self.done_ok) if self.done_ok else None
            if prev:
                _, method, target, offer, rid = prev
                self.send(kind, rnd.choice(self.ports), method, target, offer, rid)
        elif kind == "concurrent":
            offer, rid, target = self.new_request(rnd)
            ts = [threading.Thread(target=self.send, args=(kind, self.ports[i % 2], "GET", target,
                                                           offer, rid)) for i in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        elif kind == "update":
            # a polled lead: hold, approval, or a rejection (a chargeback when approved)
            lead = rnd.choice(list(self.seeded))
            offer, click = self.seeded[lead]
            word = rnd.choice(HOLD_WORDS[:2] + APPROVED_WORDS[:3] + REJECTED_WORDS[:3])
            self.send(kind, port, "GET", self.s2s(offer, click, "R%d" % lead, word), offer,
                      "R%d" % lead)
        elif kind == "post_json":
            offer, rid, target = self.new_request(rnd)
            q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(target).query))
            self.send(kind, port, "POST", "/%s/s2s?" % KEY1, offer, rid, json.dumps(q),
                      "application/json")
        elif kind == "post_form":
            offer, rid, target = self.new_request(rnd)
            self.send(kind, port, "POST", "/%s/s2s?" % KEY1, offer, rid,
                      urllib.parse.urlsplit(target).query, "application/x-www-form-urlencoded")
        else:
            self.bad(rnd, port)

    def bad(self, rnd, port):
        """A request that must create nothing."""
        offer, rid, target = self.new_request(rnd)
        which = rnd.randrange(7)
        if which == 0:    # unknown key
            target = target.replace("/%s/" % KEY1, "/k-nobody/")
        elif which == 1:  # a click of another advertiser's offer
            target = self.s2s(offer, rnd.choice(self.clicks[OTHER_OFFER]), rid, "hold")
        elif which == 2:  # unknown status word
            target = target.replace("status=", "status=zz")
        elif which == 3:  # no request_id
            target = re.sub(r"request_id=[^&]*&?", "", target)
        elif which == 4:  # unknown action
            target = target.replace("action=", "action=nope")
        elif which == 5:  # not a uuid
            target = re.sub(r"click_id=[^&]*", "click_id=not-a-uuid", target)
        else:             # a price that is not one
            target = target + "&price=12abc"
        self.send("bad", port, "GET", target, offer, rid)

    def run(self, seed_):
        rnd = random.Random(seed_)
        while time.monotonic() < self.stop_at:
            self.one(rnd)
            time.sleep(rnd.uniform(0, 0.03))


# ------------------------------------------------------------ invariants

class Verdicts:
    def __init__(self):
        self.failed = 0

    def check(self, ok, name, figures, examples=()):
        print("%-4s %s: %s" % ("ok" if ok else "FAIL", name, figures), flush=True)
        for e in list(examples)[:5]:
            print("       " + e)
        if not ok:
            self.failed += 1

    def note(self, name, figures):
        """A figure shown, not judged."""
        print("%-4s %s: %s" % ("-", name, figures), flush=True)


NUMERIC = ("base", "wm", "pay", "ref")


def norm(fields):
    """A lead's fields as history and lead_fields agree to spell them."""
    out = {}
    for k, v in fields.items():
        if v is None or (k in ("comment", "track") and v == ""):
            continue
        out[k] = round(float(v), 2) if k in NUMERIC else v
    return out


def check_postbacks(v, pg, rec, kill_port, kill_t):
    sent = rec.sent
    pb_leads = {(int(o), r): int(i) for i, o, r in pg.psql(
        "SELECT id, offer, request_id FROM leads WHERE offer > 100")}
    polled = {r: int(i) for i, r in pg.psql("SELECT id, request_id FROM leads WHERE offer <= 100")}
    by_req = collections.defaultdict(list)
    for s in sent:
        by_req[(s["offer"], s["rid"])].append(s)
    ok200 = [s for s in sent if s["code"] == 200]
    # 200: the lead answered is the one lead of its (offer, request_id)
    wrong = 0
    for s in ok200:
        if s["offer"] in PB_OFFERS:
            wrong += pb_leads.get((s["offer"], s["rid"])) != s["lead"]
        else:
            wrong += polled.get(s["rid"]) != s["lead"]
    dup_leads = int(pg.value("SELECT count(*) FROM (SELECT 1 FROM leads WHERE request_id IS"
                             " NOT NULL GROUP BY offer, request_id HAVING count(*) > 1) x"))
    v.check(wrong == 0 and dup_leads == 0, "postbacks answered 200 are in the database exactly once",
            "%d answers 200 (%d created, %d duplicate), %d not matching their lead, "
            "%d request_ids with two leads" % (
                len(ok200), sum(1 for s in ok200 if s["dup"] is False),
                sum(1 for s in ok200 if s["dup"]), wrong, dup_leads))
    # none answered otherwise created a lead; unanswered ones (kill -9) are
    # open. (Found by this check: a group whose COMMIT the PostgreSQL
    # restart cut off is answered 503 though it may have committed.)
    created_by_non200 = open_ = 0
    examples = []
    for key, ss in by_req.items():
        if key[0] not in PB_OFFERS or any(s["code"] == 200 for s in ss):
            continue
        if any(s["code"] == 0 for s in ss):
            open_ += 1
            continue
        if key in pb_leads:
            created_by_non200 += 1
            examples.append("offer %d request_id %s: lead %d, answers %s" % (
                key[0], key[1], pb_leads[key],
                ", ".join("%s %s %d at %.1f s" % (s["kind"], s["daemon"], s["code"], s["t"] - T0)
                          for s in ss)))
    sent_keys = set(by_req)
    unknown = sum(1 for key in pb_leads if key not in sent_keys)
    codes = collections.Counter(s["code"] for s in sent)
    v.check(created_by_non200 == 0 and unknown == 0,
            "postbacks answered otherwise created no lead",
            "%d requests, answers %s; %d request_ids never answered 200 created a lead, "
            "%d leads of request_ids never sent, %d request_ids without an answer (kill -9, "
            "either way is right)" % (len(sent), dict(sorted(codes.items())), created_by_non200,
                                      unknown, open_), examples)
    # every answered postback has one log row, with the status it was answered
    logged = collections.defaultdict(list)
    for q, code in pg.psql("SELECT coalesce(substring(query from 'soak=([0-9]+)'),"
                           " substring(body from 'soak[\"=:]+([0-9]+)')), http_status"
                           " FROM postbacks_in"):
        if q:
            logged[int(q)].append(int(code))
    answered = [s for s in sent if s["code"]]
    missing = [s for s in answered if s["seq"] not in logged]
    # a log row of a refusal may be written after its answer: one answered
    # by the daemon in its last second before the kill -9 may be lost
    lost_in_kill = [s for s in missing if s["port"] == kill_port and kill_t is not None
                    and kill_t - 1.0 <= s["t_end"] <= kill_t]
    other = len(missing) - len(lost_in_kill)
    examples = []
    mismatch = 0
    for s in answered:
        codes = logged.get(s["seq"])
        if codes and codes != [s["code"]]:
            mismatch += 1
            examples.append("offer %d request_id %s answered %d, log rows %s" % (
                s["offer"], s["rid"], s["code"], codes))
    v.check(other == 0 and mismatch == 0, "every postback answered has its log row",
            "%d answered, %d log rows, %d missing (%d of them answered by the killed daemon "
            "within its last second), %d with other or more rows than their answer" % (
                len(answered), sum(len(c) for c in logged.values()), len(missing),
                len(lost_in_kill), mismatch), examples)


def check_leads(v, pg):
    hist = json_rows(pg, "SELECT json_build_object('lead', lead, 'id', id, 'source', source,"
                         " 'before', before, 'after', after) FROM lead_history ORDER BY lead, id")
    cur = {r["id"]: r["f"] for r in json_rows(
        pg, "SELECT json_build_object('id', l.id, 'f', lead_fields(l)) FROM leads l")}
    by_lead = collections.defaultdict(list)
    for h in hist:
        by_lead[h["lead"]].append(h)
    approvals_twice = payout_outside = left_closed = back = allowed_exits = 0
    approvals = changes = 0
    replay_bad = chain_bad = 0
    examples = collections.defaultdict(list)  # check -> a few cases, printed under it
    for lead, rows in by_lead.items():
        state = {}
        napp = 0
        for h in rows:
            b, a = h["before"], h["after"]
            for k, val in b.items():
                if norm({k: val}) != norm({k: state.get(k)}):
                    chain_bad += 1
                    examples["replay"].append("lead %d history %d: before %s=%r, replay has %r" % (
                        lead, h["id"], k, val, state.get(k)))
                    break
            if a.get("approved_at"):
                napp += 1
            if any(k in b for k in ("wm", "pay", "ref")) and not a.get("approved_at"):
                payout_outside += 1
                examples["paid"].append("lead %d history %d: payout changed without approval" % (lead, h["id"]))
            if "status" in a and "status" in b:
                changes += 1
                o, n = b["status"], a["status"]
                if o in (10, 11, 12) and n != o:
                    if (o == 10 and n == 11) or (o != 12 and h["source"] in ("chargeback", "dates")):
                        allowed_exits += 1
                    else:
                        left_closed += 1
                        examples["moves"].append("lead %d history %d: %d -> %d (%s)" % (lead, h["id"], o, n,
                                                                               h["source"]))
                if o >= 4 and 1 <= n <= 3:
                    back += 1
                    examples["moves"].append("lead %d history %d: %d -> %d" % (lead, h["id"], o, n))
            state.update(a)
        approvals += napp
        approvals_twice += napp > 1
        if lead in cur and norm(state) != norm(cur[lead]):
            replay_bad += 1
            diff = {k: (norm(state).get(k), norm(cur[lead]).get(k))
                    for k in set(norm(state)) | set(norm(cur[lead]))
                    if norm(state).get(k) != norm(cur[lead]).get(k)}
            examples["replay"].append("lead %d: replay differs %s" % (lead, diff))
    no_history = sum(1 for lead in cur if lead not in by_lead)
    v.check(approvals_twice == 0 and payout_outside == 0,
            "no lead approved or paid twice (payouts written once, with the approval)",
            "%d approvals over %d leads, %d leads approved twice, %d payout changes "
            "outside an approval" % (approvals, len(cur), approvals_twice, payout_outside),
            examples["paid"])
    v.check(left_closed == 0 and back == 0,
            "no lead left 10/11/12, none went from >= 4 back to 1-3",
            "%d status changes, %d left 10/11/12 (%d allowed: paid -> return, or a chargeback"
            " / dates cancel of 10/11 as DESIGN.md allows), %d went back to 1-3" % (
                changes, left_closed, allowed_exits, back), examples["moves"])
    v.check(replay_bad == 0 and chain_bad == 0 and no_history == 0,
            "every lead's status and fields equal the replay of its history",
            "%d leads, %d history rows, %d differ from their replay, %d rows whose 'before' "
            "is not the replay so far, %d leads without history" % (
                len(cur), len(hist), replay_bad, chain_bad, no_history), examples["replay"])


def check_polls(v, pg, daemons):
    runs = json_rows(pg, "SELECT json_build_object('id', id, 'offer', offer, 'variant', variant,"
                         " 'worker', worker, 's', extract(epoch FROM started), 'f',"
                         " extract(epoch FROM finished), 'outcome', outcome) FROM poll_runs")
    by_pair = collections.defaultdict(list)
    for r in runs:
        by_pair[(r["offer"], r["variant"])].append(r)
    overlaps = 0
    examples = []
    for pair, rs in by_pair.items():
        # per worker, the span of its runs that touch each other; spans of
        # two workers must not overlap
        rs.sort(key=lambda r: r["s"])
        last_end = {}
        for r in rs:
            f = r["f"] if r["f"] is not None else r["s"]
            for w, end in last_end.items():
                if w != r["worker"] and end > r["s"]:
                    overlaps += 1
                    examples.append("%s/%s: run %d of %s starts before %s's ends" % (
                        pair[0], pair[1], r["id"], r["worker"], w))
            last_end[r["worker"]] = max(last_end.get(r["worker"], 0), f)
    outcomes = collections.Counter(r["outcome"] for r in runs)
    workers = len(set(r["worker"] for r in runs))
    v.check(overlaps == 0, "no (offer, variant) polled by two daemons at once",
            "%d poll runs by %d workers over %d pairs, %d overlaps; outcomes %s" % (
                len(runs), workers, len(by_pair), overlaps, dict(sorted(outcomes.items()))),
            examples)
    ids = set(r["id"] for r in runs)
    logged = unrecorded = 0
    missing = []
    for d in daemons:
        for pid, path, _, _ in d.lives:
            with open(path, errors="replace") as f:
                for line in f:
                    if "poll run not recorded" in line:
                        unrecorded += 1
                    m = re.search(r'msg="?poll done"? .* run=(\d+)', line)
                    if m and int(m.group(1)) > 0:
                        logged += 1
                        if int(m.group(1)) not in ids:
                            missing.append(int(m.group(1)))
    running = outcomes.get("running", 0)
    v.check(not missing and not unrecorded and not running, "every poll run has its row",
            "%d 'poll done' log lines, %d name a run that is not in poll_runs, %d 'poll run not "
            "recorded' warnings, %d rows still 'running'" % (logged, len(missing), unrecorded,
                                                           running))


def thirds(samples, t0, t1):
    """Mean RSS, median and most fds of the middle and of the last third of
    [t0, t1]. Open fds follow the connections in flight, so "steady" reads
    as: the last third's median within what the middle third reached; a
    leak of one per poll or per request climbs past it within minutes."""
    span = (t1 - t0) / 3.0
    mid = [s for s in samples if t0 + span <= s[0] < t0 + 2 * span]
    last = [s for s in samples if s[0] >= t0 + 2 * span]
    if not mid or not last:
        return None

    def med(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2]
    return (sum(s[1] for s in mid) / len(mid), sum(s[1] for s in last) / len(last),
            med([s[2] for s in mid]), max(s[2] for s in mid), med([s[2] for s in last]),
            max(s[2] for s in last))


def check_resources(v, daemons, samples):
    """RSS and fds of each daemon process that ran to the end, over its
    own life; a life that ended in the kill -9 is shown, not judged."""
    for d in daemons:
        for pid, _, t0, t1 in d.lives:
            th = thirds(samples.get(pid, []), t0, t1)
            if th is None:
                continue
            rss_mid, rss_last, fd_mid, fd_mid_max, fd_last, fd_max = th
            rss = "%.1f MiB mean in the middle third of its life, %.1f MiB in the last (%+.1f %%)" % (
                rss_mid / 1024, rss_last / 1024, 100.0 * (rss_last - rss_mid) / rss_mid)
            fds = "median %d (max %d) in the middle third, median %d (max %d) in the last" % (
                fd_mid, fd_mid_max, fd_last, fd_max)
            name = "daemon %s (pid %d)" % (d.name, pid)
            if pid != d.lives[-1][0]:
                v.note(name + ", killed, RSS", rss)
                v.note(name + ", killed, open fds", fds)
                continue
            v.check(abs(rss_last - rss_mid) <= 0.10 * rss_mid, name + " RSS flat after warm-up", rss)
            v.check(fd_last <= fd_mid_max, name + " open fds steady", fds)


# ------------------------------------------------------------ the run

def main():
    seconds = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SOAK_SECONDS") or 600)
    work = tempfile.mkdtemp(prefix="leadsync-soak-")
    pg = bl.PgLocal(extra_opts="")
    mock = daemons = None
    samples = collections.defaultdict(list)
    v = Verdicts()
    try:
        pg.migrate()
        exts = ["E%d" % i for i in range(1, POLLED_OFFERS * LEADS_PER_OFFER + 1)]
        mock = MockCRM(exts)
        clicks, seeded = seed(pg, mock.host)
        ports = [bl.free_port(), bl.free_port()]
        daemons = [Daemon("a", pg, ports[0], work), Daemon("b", pg, ports[1], work)]
        say("%d s: PostgreSQL in %s, daemons on %s, mock CRM on %s, work folder %s" % (
            seconds, pg.dir, ports, mock.host, work))
        t_start = time.monotonic()
        stop_at = t_start + seconds
        rec = Recorder()
        stream = Stream(ports, clicks, seeded, rec, stop_at)
        clients = [threading.Thread(target=stream.run, args=(i,), daemon=True)
                   for i in range(CLIENTS)]
        for c in clients:
            c.start()
        events = [(0.35, "pg_restart"), (0.60, "kill")]
        kill_t = None
        while time.monotonic() < stop_at:
            now = time.monotonic()
            for d in daemons:
                s = proc_sample(d.p.pid)
                if s:
                    samples[d.p.pid].append((now, s[0], s[1]))
            if events and now >= t_start + events[0][0] * seconds:
                _, what = events.pop(0)
                if what == "pg_restart":
                    say("PostgreSQL stop")
                    subprocess.run([os.path.join(bl.ROOT, "scripts", "pg-local"), "stop", pg.dir],
                                   check=True, capture_output=True)
                    time.sleep(2)
                    subprocess.run([os.path.join(bl.ROOT, "scripts", "pg-local"), "start", pg.dir],
                                   check=True, capture_output=True)
                    say("PostgreSQL started again")
                else:
                    say("kill -9 daemon b (pid %d)" % daemons[1].p.pid)
                    kill_t = time.monotonic()
                    daemons[1].kill9()
                    time.sleep(1)
                    daemons[1].start()
                    say("daemon b started again (pid %d)" % daemons[1].p.pid)
            time.sleep(1)
        for c in clients:
            c.join(60)
        say("stream done: %d postbacks; mock CRM %s" % (len(rec.sent), dict(mock.counts)))
        health = [http_call(p, "GET", "/healthz")[0] for p in ports]
        # let the daemons write what they hold, then stop them cleanly
        time.sleep(3)
        for d in daemons:
            d.stop()
        print("soak: %d s, %d postbacks, %d CRM requests" % (
            seconds, len(rec.sent), sum(mock.counts.values())), flush=True)
        check_postbacks(v, pg, rec, ports[1], kill_t)
        check_leads(v, pg)
        check_polls(v, pg, daemons)
        check_resources(v, daemons, samples)
        v.check(health == [200, 200], "both daemons answer /healthz", "answers %s" % health)
    finally:
        if daemons:
            for d in daemons:
                d.stop()
        if mock:
            mock.close()
        pg.close()
    if v.failed:
        print("soak: %d invariants FAILED; logs in %s" % (v.failed, work), flush=True)
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)
    print("soak: all invariants hold", flush=True)


if __name__ == "__main__":
    main()
