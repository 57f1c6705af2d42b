-- The demo CRM that `make run` starts next to leadsync: a small HTTP
-- server with a JSON API, to try the whole loop without a real CRM. Offer
-- parameters:
--   host  where it listens, e.g. "127.0.0.1:9001" (a port is fine here)
--   key   its API key
--
-- Requests:
--   by ids  (processing, accepted): GET http://{host}/orders?ids=A-17,A-18&key={key}
--   by date (dates):                GET http://{host}/orders?from=2026-11-16&to=2026-11-22&key={key}
--                                   (from and to inclusive, in the offer's time zone)
-- Answer (both): a JSON array, one object per order it knows (unknown ids
-- are left out), 200 even when empty:
--   [ {"id": "A-17", "status": "approved", "payout": 8.0, "currency": "USD"},
--     {"id": "A-18", "status": "callback"} ]
--   id       the CRM's order id (our external id), a string
--   status   new, processing, callback, hold, approved, cancelled, trash,
--            duplicate (call centre) or shipped, delivered, paid, returned
--            (delivery); all of them are our built-in words
--   payout   optional: what the advertiser pays for this order, in units;
--            sent with "approved", it overrides the goal's payout
--   currency optional: ISO code of the payout
--
-- Approved orders are approved with the advertiser's payout (cash.pay). A
-- payout in another currency than the goal's cannot be taken alone
-- (leadsync has no exchange rates: a cash.cc that changes the currency
-- needs wm, pay and ref), so that edit is refused and noted, and the lead
-- is approved with its goal's payouts instead. Every other status is read
-- as a word with setstc (the word also goes to the lead's comment).

local function process(data)
	for _, d in ipairs(data) do
		local oid = e2i[d.id]
		if string.lower(tostring(d.status)) == "approved" and tonumber(d.payout) then
			local ok = lead.edit(oid, {
				accept = 1,
				comment = d.status,
				cash = { pay = d.payout, cc = d.currency }, -- cc nil: the goal's currency
			})
			if not ok and oid then -- refused, not an order of another network
				lead.approve(oid, d.status)
			end
		else
			lead.setstc(oid, d.status)
		end
	end
end

return {
	process = process,

	-- leads in processing, callback and hold: every 10 minutes
	processing = { url = "http://{host}/orders?ids={idel}&key={key}", batch = 100 },
	-- approved leads on their way to the client: every few hours
	accepted = { url = "http://{host}/orders?ids={idel}&key={key}", batch = 100 },
	-- every open lead, by creation date, a week per request: hourly
	dates = { url = "http://{host}/orders?from={from}&to={to}&key={key}", days = 7 },
}
