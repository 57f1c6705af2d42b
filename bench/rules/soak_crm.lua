-- The rule of the soak (bench/soak.py): rules/json_setstc.lua over plain
-- HTTP to the soak's mock CRM, all three variants. The mock answers a JSON
-- list of {id, status} (or, at random, something no CRM should send).
-- Offer parameters: host (127.0.0.1:PORT of the mock), key.
local function request()
	return { url = "http://{host}/api/orders?ids={idel}&key={key}", batch = 25 }
end

return {
	processing = request(),
	accepted = request(),
	dates = { url = "http://{host}/api/orders?from={from}&to={to}&key={key}", days = 3 },

	process = function(data)
		for _, d in ipairs(data) do lead.setstc(e2i[d.id], d.status) end
	end,
}
