-- LeadVertex: statuses of orders by their LeadVertex ids (admin API,
-- getOrdersByIds). Offer parameters:
--   host  the account's domain, e.g. "myshop.leadvertex.ru"
--   key   the admin API token (LeadVertex: Settings → API)
--
-- Request:  GET https://{host}/api/admin/getOrdersByIds.html?token={key}&ids=17,18,19
-- Answer:   an object keyed by the LeadVertex order id; orders that do not
--           exist are simply missing:
--   { "1017": { "status": 1, "fio": "...", "phone": "...", "comment": "...", ... },
--     "1018": { "status": "4", ... } }
--
-- LeadVertex statuses are NUMBERS private to each account (Settings →
-- Statuses). They are not our status numbers: LeadVertex's 2 is not our
-- 2 (processing). STATUSES below translates them; check it against your
-- account's list before use. Every number the account can send must be in
-- the table: a number that is not is logged and left alone by this rule
-- (if it were handed to lead.setstatus, 1..12 would read as OUR statuses).

local STATUSES = {
	[0] = "processing",                  -- Обработка: not called yet
	[1] = "accept",                      -- Принят: approved by the operator
	[2] = "cancel",                      -- Отменён: the offer's reject reason
	[3] = { status = 5, reason = 6 },    -- Треш / spam: cancelled, reason 6 (trash or test)
	[4] = "callback",                    -- Перезвонить
	[5] = "shipped",                     -- Отправлен: in transit (our 8)
	[6] = "delivered",                   -- Доставлен в пункт выдачи (our 9)
	[7] = "paid",                        -- Выкуплен (our 10)
	[8] = "returned",                    -- Возврат (our 11)
	[9] = { status = 5, reason = 7 },    -- Дубль: cancelled, reason 7 (duplicate)
}

-- The request is the same for leads in processing and accepted leads; the
-- accepted variant runs every few hours and sees the delivery statuses 5..8.
local function request()
	return {
		url = "https://{host}/api/admin/getOrdersByIds.html?token={key}&ids={idel}",
		batch = 50, -- ids per request: keep the URL short
	}
end

return {
	statuses = STATUSES,
	processing = request(),
	accepted = request(),

	process = function(data)
		-- Walk OUR leads and look each up in the answer (the answer is keyed
		-- by the LeadVertex id, which is our external id). Orders LeadVertex
		-- did not return are left as they are.
		for _, id in ipairs(idl) do
			local order = data[ide[id]]
			if type(order) == "table" then
				-- status comes as 1 or as "1": tonumber reads both
				local code = math.tointeger(tonumber(order.status))
				if code ~= nil and STATUSES[code] ~= nil then
					lead.setstatus(id, code)
				else
					log("order " .. ide[id] .. ": LeadVertex status '" .. tostring(order.status)
						.. "' is not in STATUSES, lead " .. id .. " left as it is")
				end
			end
		end
	end,
}
