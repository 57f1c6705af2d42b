-- The shortest rule (seed 001's one-liner): the CRM answers a JSON list of
-- {id, status} and our built-in recognition reads the status words. Fits
-- most simple CRMs and landing-page order scripts. Offer parameters:
--   host  the CRM's domain (may carry a port: "crm.example:8080")
--   key   its API key, sent in the query
--
-- Request:  GET https://{host}/api/orders?ids=A-17,A-18&key={key}
-- Answer:   [ {"id": "A-17", "status": "Approved"}, {"id": 10234, "status": "no answer"}, ... ]
--
-- PHP original:
--   foreach ($data as $d) $core->lead->setstc($e2i[$d['id']], $d['status']);
--
-- lead.setstc reads the word (case-insensitive: "approved", "Cancelled",
-- "no answer", "trash", "paid", the Russian names ...; DESIGN.md "Status
-- text recognition") and also writes it to the lead's comment, so you can
-- see what the CRM said. An id that is not ours (e2i[...] is nil) is
-- skipped and counted; a word nobody knows changes no status and is
-- counted, the comment is still written. To teach the rule a word of your
-- CRM, add a statuses table, e.g.
--   statuses = { ["odobren"] = "accept", ["otkaz"] = { status = 5, reason = 2 } },

local function request()
	return { url = "https://{host}/api/orders?ids={idel}&key={key}", batch = 100 }
end

return {
	processing = request(),
	accepted = request(),

	process = function(data)
		for _, d in ipairs(data) do lead.setstc(e2i[d.id], d.status) end
	end,
}
