-- amoCRM (API v4, HAL+JSON): deals ("leads" in amoCRM) by their amoCRM
-- ids. Offer parameters:
--   host  the account's domain, e.g. "myshop.amocrm.ru" (or .amocrm.com / .kommo.com)
--   key   a long-lived access token of a private integration
--         (amoCRM → Settings → Integrations → your integration → Keys and scopes)
--
-- Request:  GET https://{host}/api/v4/leads?filter[id][]=19619&filter[id][]=19620&with=loss_reason&limit=50
--           Authorization: Bearer {key}
-- Answer:   { "_page": 1,
--             "_links": { "self": {"href": "..."}, "next": {"href": "...&page=2"} },
--             "_embedded": { "leads": [ { "id": 19619, "status_id": 142, "pipeline_id": 3104455,
--                 "price": 4500, "loss_reason_id": null, "closed_at": 1795000000,
--                 "_embedded": { "loss_reason": [ {"id": 41, "name": "Дорого"} ] } } ] } }
--           No deal matched: HTTP 204 and an empty body (data is then an
--           empty table, and there is nothing to do).
--
-- Every pipeline has its own stage ids (large numbers, e.g. 3104456); only
-- two ids are the same in every account: 142 "won" (Успешно реализовано)
-- and 143 "lost" (Закрыто и не реализовано). So a deal in any other stage
-- is still being worked on and is left alone; 142 approves it, 143 cancels
-- it with a reason read from the deal's loss reason (LOSS_REASONS; the
-- names are the account's own, Settings → Loss reasons).

local WON, LOST = 142, 143

-- amoCRM loss reason name → our reject reason (seed 001's standard list).
-- Write the names in lower case: they are compared after lower() below. A
-- reason not listed cancels with the offer's default reason.
local LOSS_REASONS = {
	["дорого"] = 9,                   -- too expensive
	["передумал"] = 2,                -- changed mind
	["не дозвонились"] = 11,          -- could not get through
	["не заказывал"] = 3,             -- did not order
	["дубль"] = 7,                    -- duplicate
	["купил в другом месте"] = 8,     -- ordered elsewhere
	["не устроила доставка"] = 10,
	["тест"] = 6,                     -- trash or test
}

local function request()
	return {
		url = "https://{host}/api/v4/leads",
		headers = { Authorization = "Bearer {key}" },
		fields = { ["filter[id]"] = "{ide}", with = "loss_reason", limit = 50 },
		batch = 50,
	}
end

-- string.lower only folds A-Z; this also folds Russian А-Я and Ё.
local function lower(s)
	if not utf8.len(s) then
		return string.lower(s) -- not UTF-8: ASCII folding only
	end
	local out = {}
	for _, c in utf8.codes(s) do
		if (c >= 0x41 and c <= 0x5A) or (c >= 0x410 and c <= 0x42F) then
			c = c + 0x20
		elseif c == 0x401 then
			c = 0x451 -- Ё
		end
		out[#out + 1] = utf8.char(c)
	end
	return table.concat(out)
end

-- The reason of a lost deal, or nil (the offer's default).
local function reason_of(deal)
	local e = deal._embedded
	local lr = e and e.loss_reason and e.loss_reason[1]
	if lr and type(lr.name) == "string" then
		return LOSS_REASONS[lower(lr.name)]
	end
	return nil
end

return {
	statuses = { [WON] = "accept", [LOST] = "cancel" },
	processing = request(),

	process = function(data)
		if http_status == 204 then
			return -- nothing matched the filter
		end
		if http_status ~= 200 then
			-- 401: the token expired or was revoked
			error("amoCRM answered " .. http_status .. ": " .. tostring(data.title or data.detail))
		end
		local deals = data._embedded and data._embedded.leads or {}
		for _, deal in ipairs(deals) do
			-- amoCRM ids are numbers: e2i[19619] finds the external id "19619"
			local oid = e2i[deal.id]
			local stage = math.tointeger(deal.status_id)
			if stage == WON then
				-- price is the deal's budget; for a percent goal, also pass
				-- base = deal.price (and counts) here
				lead.setstatus(oid, WON)
			elseif stage == LOST then
				lead.edit(oid, { status = 5, reason = reason_of(deal) })
			end
			-- any other stage: still in the pipeline, nothing to change
		end
		-- HAL paging: follow _links.next until there is none. Its href is
		-- complete (filter, limit, page), and the Authorization header is
		-- kept from this request.
		local nxt = data._links and data._links.next
		if nxt and nxt.href then
			return { next = { url = nxt.href } }
		end
	end,
}
