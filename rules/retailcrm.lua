-- retailCRM (API v5): order statuses by externalId, paged. Offer parameters:
--   host  the account's domain, e.g. "myshop.retailcrm.ru"
--   key   an API key with the "orders read" right (Settings → Integration → API keys)
--
-- Request:  GET https://{host}/api/v5/orders?filter[externalIds][]=A-17&filter[externalIds][]=A-18&limit=20
--           X-API-KEY: {key}
-- Answer:   { "success": true,
--             "pagination": { "limit": 20, "totalCount": 45, "currentPage": 1, "totalPageCount": 3 },
--             "orders": [ { "id": 5123, "externalId": "A-17", "status": "client-confirmed", ... } ] }
--           or, on a bad key or filter, { "success": false, "errorMsg": "..." }
--
-- retailCRM pages its answer (limit is 20, 50 or 100 orders per page), so
-- process asks for the next page until currentPage reaches totalPageCount.
--
-- Statuses are the symbolic codes of the account (Settings → Statuses).
-- STATUSES holds the default set of a new account; add your own codes.
-- A code neither here nor among our built-in words (DESIGN.md "Status
-- text recognition") is counted as unrecognised and only written to the
-- lead's comment.

local LIMIT = 20

local STATUSES = {
	-- group "new"
	["new"] = "processing",
	-- group "approval"
	["availability-confirmed"] = "processing",
	["offer-analog"] = "callback",           -- the manager offers a substitute
	["client-confirmed"] = "accept",
	["prepayed"] = "accept",
	-- group "assembling": approved, being packed
	["send-to-assembling"] = "accept",
	["assembling"] = "accept",
	["assembled"] = 7,                       -- packed, waiting for the courier (our 7)
	-- group "delivery"
	["send-to-delivery"] = 7,
	["delivering"] = "shipped",              -- our 8, in transit
	["redirect"] = "shipped",
	["ready-for-self-pickup"] = "delivered",
	["arrived-in-pickup-point"] = "delivered",
	-- group "complete"
	["complete"] = "paid",
	-- group "cancel": our 5 with the closest standard reason
	["no-call"] = { status = 5, reason = 11 },            -- could not get through
	["no-product"] = { status = 5, reason = 15 },         -- out of stock: offer disabled
	["already-buyed"] = { status = 5, reason = 8 },       -- ordered elsewhere
	["delyvery-did-not-suit"] = { status = 5, reason = 10 }, -- (sic: retailCRM's own spelling)
	["prices-did-not-suit"] = { status = 5, reason = 9 },   -- too expensive
	["cancel-other"] = "cancel",
	-- returns
	["return"] = "returned",
}

local function request()
	return {
		url = "https://{host}/api/v5/orders",
		headers = { ["X-API-KEY"] = "{key}" },
		-- a GET: fields go in the query; "{ide}" as a whole field is the list
		-- of our external ids, written filter[externalIds][]=A-17&...
		fields = { ["filter[externalIds]"] = "{ide}", limit = LIMIT },
		batch = 100,
	}
end

return {
	statuses = STATUSES,
	processing = request(),
	accepted = request(),

	process = function(data)
		-- A wrong key answers 403 {"success": false, "errorMsg": "Wrong \"apiKey\" value."}:
		-- fail the poll so the operator sees the message.
		if http_status ~= 200 or data.success ~= true then
			error("retailCRM answered " .. http_status .. ": " .. tostring(data.errorMsg))
		end
		for _, o in ipairs(data.orders) do
			-- orders created in the CRM by hand have no externalId: e2i[nil] is nil,
			-- and lead.setstc(nil, ...) is counted as unknown, not an error
			lead.setstc(e2i[o.externalId], o.status)
		end
		local p = data.pagination
		if p and tonumber(p.currentPage) < tonumber(p.totalPageCount) then
			-- The next page keeps this request's url, header and fields (the
			-- filter, the limit): only the page number is new.
			return { next = { fields = { page = tonumber(p.currentPage) + 1 } } }
		end
	end,
}
