-- postbacks.lua: the wrk script of bench/sec_postbacks.py. Every request is
-- GET /{key}/s2s with its own request_id, "<run>-<thread>-<n>", unique
-- across wrk's threads (the thread number comes from setup()); with
-- LSB_REPEAT = 0.1 one request in ten repeats an earlier request_id of the
-- same thread (same status: a duplicate, answered 200 creating nothing).
--
-- The last LSB_TAIL seconds of the run send postbacks with an unknown
-- status word instead ("<run>t-..." ids): they take the same path through
-- the daemon but create no lead, so the requests wrk cuts off when its time
-- is up can never be leads whose 200 nobody read, and the leads in the
-- database must equal the request ids answered 200 exactly.
--
-- Settings come from the environment (the main state of wrk gets no
-- arguments): LSB_KEY, LSB_CLICKS (clicks 00000000-0000-4000-8000-%012x of
-- 0..LSB_CLICKS-1), LSB_RUN, LSB_REPEAT, LSB_SECONDS, LSB_TAIL, LSB_OUT
-- (done() writes its JSON there: counts, latency percentiles, and the lead
-- ids answered 200).
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } lsb_timespec;
int clock_gettime(int clk, lsb_timespec *ts);
]]
local ts = ffi.new("lsb_timespec")
local function now()
	ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
	return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

local key = os.getenv("LSB_KEY")
local clicks = tonumber(os.getenv("LSB_CLICKS"))
local run = os.getenv("LSB_RUN")
local repeat_frac = tonumber(os.getenv("LSB_REPEAT") or "0")
local seconds = tonumber(os.getenv("LSB_SECONDS"))
local tail = tonumber(os.getenv("LSB_TAIL"))

-- main state: the threads, numbered in setup()
local threads = {}

function setup(thread)
	thread:set("tid", #threads)
	table.insert(threads, thread)
end

-- thread state; globals, since done() reads them with thread:get()
local t0, deadline
n = 0        -- real postbacks sent: request ids 1..n of this thread
repeats = 0  -- of which repeats of an earlier id
tails = 0    -- tail postbacks sent
created, dups, tail_ans, others = 0, 0, 0, 0
codes = {}   -- answers by HTTP status
ids = {}     -- lead ids answered 200 "duplicate":false
dup_ids = {} -- lead ids answered 200 "duplicate":true

function init(args)
	math.randomseed(1000 + tid)
end

-- the click of request id k: a repeat names the click of its original
local function path(k, rid, status)
	local c = (tid * 7919 + k) % clicks
	return string.format("/%s/s2s?click_id=00000000-0000-4000-8000-%012x&request_id=%s"
		.. "&action=lead&status=%s&price=30", key, c, rid, status)
end

function request()
	local t = now()
	if not t0 then
		t0 = t
		deadline = t0 + seconds - tail
	end
	if t >= deadline then
		tails = tails + 1
		return wrk.format("GET", path(tails, string.format("%st-%d-%d", run, tid, tails),
			"benchtail"))
	end
	local k
	if n > 0 and repeat_frac > 0 and math.random() < repeat_frac then
		k = math.random(1, n)
		repeats = repeats + 1
	else
		n = n + 1
		k = n
	end
	return wrk.format("GET", path(k, string.format("%s-%d-%d", run, tid, k), "hold"))
end

function response(status, headers, body)
	codes[status] = (codes[status] or 0) + 1
	if status == 200 then
		local lead = tonumber(string.match(body, '"lead":(%d+)'))
		if string.find(body, '"duplicate":true', 1, true) then
			dups = dups + 1
			dup_ids[#dup_ids + 1] = lead
		else
			created = created + 1
			ids[#ids + 1] = lead
		end
	elseif status == 400 and string.find(body, "benchtail", 1, true) then
		tail_ans = tail_ans + 1
	else
		others = others + 1
	end
end

local function list(t)
	local parts = {}
	for i = 1, #t do
		parts[i] = string.format("%d", t[i])
	end
	return "[" .. table.concat(parts, ",") .. "]"
end

function done(summary, latency, requests)
	local th = {}
	local all_ids, all_dups = {}, {}
	for i, t in ipairs(threads) do
		local cs = {}
		for code, c in pairs(t:get("codes")) do
			cs[#cs + 1] = string.format('"%d":%d', code, c)
		end
		th[i] = string.format('{"tid":%d,"sent":%d,"repeats":%d,"tails":%d,"created":%d,'
			.. '"duplicates":%d,"tail_answers":%d,"other":%d,"codes":{%s}}',
			t:get("tid"), t:get("n"), t:get("repeats"), t:get("tails"), t:get("created"),
			t:get("dups"), t:get("tail_ans"), t:get("others"), table.concat(cs, ","))
		for _, v in ipairs(t:get("ids")) do all_ids[#all_ids + 1] = v end
		for _, v in ipairs(t:get("dup_ids")) do all_dups[#all_dups + 1] = v end
	end
	local e = summary.errors
	local f = assert(io.open(os.getenv("LSB_OUT"), "w"))
	f:write(string.format('{"duration_us":%d,"requests":%d,'
		.. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
		.. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p99.9":%d,"max":%d,"mean":%.1f},'
		.. '"threads":[%s],"ids":%s,"dup_ids":%s}\n',
		summary.duration, summary.requests, e.connect, e.read, e.write, e.status, e.timeout,
		latency:percentile(50), latency:percentile(90), latency:percentile(99),
		latency:percentile(99.9), latency.max, latency.mean,
		table.concat(th, ","), list(all_ids), list(all_dups)))
	f:close()
end
