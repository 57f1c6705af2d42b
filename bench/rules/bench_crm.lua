-- The rule of the poll-pass benchmark (bench/sec_pass.py): rules/json_setstc.lua
-- over plain HTTP to the mock CRM (build/bench/bench_crm), processing only.
-- Offer parameters: host (127.0.0.1:PORT of the mock), key.
return {
	processing = { url = "http://{host}/api/orders?ids={idel}&key={key}", batch = 100 },

	process = function(data)
		for _, d in ipairs(data) do lead.setstc(e2i[d.id], d.status) end
	end,
}
