-- An XML export by date range: the CRM lists every order created in a
-- period, and the rule sets the status of those that are ours. This is the
-- "dates" check (hourly, all our leads that are not final yet, up to
-- `days` days per request); it may also cancel an approved lead (a late
-- refusal, a lost parcel), which the id checks may not. Offer parameters:
--   host     the CRM's domain
--   partner  our partner id in that CRM
--   key      the export key
--
-- Request:  GET https://{host}/export/orders.xml?partner={partner}&key={key}&date_from=2026-11-16&date_to=2026-11-23
--           date_to is EXCLUSIVE in this CRM (orders before that day), so the
--           rule passes {tom}, the day after the range, rather than {to}.
--           (Other forms: {ffrom}/{fto} "YYYY-MM-DD HH:MM:SS", {ufrom}/{uto}
--           UNIX time, {ftom}/{utom}; all in the offer's time zone.)
-- Answer:
--   <?xml version="1.0" encoding="UTF-8"?>
--   <response status="ok">
--     <orders total="2">
--       <order id="A-17">
--         <status>Approved</status>
--         <created>2026-11-16 10:00:05</created>
--         <track>RA123456789RU</track>
--         <comment><![CDATA[called twice]]></comment>
--       </order>
--     </orders>
--   </response>
--   or <response status="error"><error code="403">Invalid key</error></response>
--
-- The decoded XML: every element is a table {name=, attr={...},
-- children={...}, text=} (text trimmed, CDATA included); xml.find(el,
-- "name") is the first child element of that name (or nil), xml.all(el,
-- "name") the list of all of them.

-- The text of el's child `name`, or nil when it is missing or empty.
local function child_text(el, name)
	local c = xml.find(el, name)
	if c and c.text ~= "" then
		return c.text
	end
	return nil
end

return {
	-- Words of this CRM that our built-in recognition does not know.
	statuses = {
		["Недозвон"] = "callback",
		["Вручен"] = "delivered",
		["lost in transit"] = { status = 5, reason = 10 },
	},

	dates = {
		url = "https://{host}/export/orders.xml?partner={partner}&key={key}&date_from={from}&date_to={tom}",
		format = "xml",
		days = 7,
		process = function(data)
			if data.attr.status ~= "ok" then
				local e = xml.find(data, "error")
				error("export failed: " .. (e and (e.attr.code or "") .. " " .. e.text or "no <error>"))
			end
			local orders = xml.find(data, "orders")
			if not orders then
				return -- <response status="ok"/>: no orders in the period
			end
			for _, o in ipairs(xml.all(orders, "order")) do
				local oid = e2i[o.attr.id] -- nil for orders of other partners
				lead.setstatus(oid, child_text(o, "status"))
				if oid then
					local track, comment = child_text(o, "track"), child_text(o, "comment")
					if track or comment then
						lead.edit(oid, { track = track, comment = comment })
					end
				end
			end
		end,
	},
}
