-- A CRM with words of its own, read by lead.setstc: the rule's statuses
-- map teaches them; the offer's status_words (in leads.json, as the
-- import record carries them) come before the map and the built-in words.
return {
	statuses = {
		odobren = "accept",                 -- approved
		otkaz = { status = 5, reason = 2 }, -- refused: changed mind
		["3"] = false,                      -- the CRM's 3 is not our 3
	},
	processing = { url = "https://{host}/api/orders?ids={idel}&key={key}" },
	process = function(data)
		for _, d in ipairs(data) do lead.setstc(e2i[d.id], d.status) end
	end,
}
