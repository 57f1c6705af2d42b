-- The rule of the pass's rule-bound measurement (bench/sec_pass.py): the
-- same requests as bench_crm.lua, but `process` spends its CPU in work the
-- budget charges (json.encode of the answer, again and again) and changes
-- nothing, so the pass is bound by the rule, not by PostgreSQL's writes.
-- What it measures is how the rule threads (LEADSYNC_RULE_THREADS) share
-- that work across the cores.
return {
	processing = { url = "http://{host}/api/orders?ids={idel}&key={key}", batch = 100 },

	process = function(data)
		local n = 0
		for _ = 1, 60 do n = n + #json.encode(data) end
		return n
	end,
}
