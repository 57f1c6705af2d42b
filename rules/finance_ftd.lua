-- A financial (forex, crypto, betting) CRM: a lead is approved when the
-- client made a first deposit ("FTD"), whatever the sales status says;
-- until then the sales status is read as a word (seed 001's financial
-- processing code). Offer parameters:
--   host  the broker CRM's API domain
--   key   the affiliate API token, sent as a header
--
-- Request:  GET https://{host}/api/v2/affiliates/leads?ids=F-1001,F-1002
--           Authorization: Token {key}
-- Answer:   [ {"id": "F-1001", "status": "No Answer", "ftd": 0, "ftd_date": null},
--             {"id": "F-1002", "status": "Deposited", "ftd": 1, "ftd_date": "2026-11-22 14:03:11"} ]
--
-- PHP original:
--   foreach ($data as $d) {
--     $oid = $e2i[$d['id']];
--     if (!$oid) continue;
--     if ($d['ftd']) $core->lead->approve($oid, $d['status']);
--     else $core->lead->setstc($oid, $d['status']);
--   }
--
-- Careful with the flag: PHP treats 0, "0", "" and null as false, Lua only
-- nil and false. CRMs send it as 1/0, "1"/"0", true/false or "yes"/"no":
-- has_ftd() reads them all.

-- Sales statuses of broker CRMs that our built-in words do not know.
local STATUSES = {
	["new"] = "processing",
	["in progress"] = "processing",
	["call again"] = "callback",
	["call back"] = "callback",
	["no answer"] = "callback",
	["voicemail"] = "callback",
	["not interested"] = { status = 5, reason = 2 },
	["low potential"] = { status = 5, reason = 2 },
	["wrong number"] = { status = 5, reason = 1 },
	["invalid"] = { status = 5, reason = 1 },
	["wrong language"] = { status = 5, reason = 13 },
	["under age"] = { status = 5, reason = 6 },
	["duplicate"] = { status = 5, reason = 7 },
}

local function has_ftd(v)
	if json.isnull(v) or v == false then return false end
	if v == true then return true end
	local s = string.lower(tostring(v))
	return s ~= "0" and s ~= "" and s ~= "false" and s ~= "no"
end

local function request()
	return {
		url = "https://{host}/api/v2/affiliates/leads?ids={idel}",
		headers = { Authorization = "Token {key}" },
		batch = 100,
	}
end

return {
	statuses = STATUSES,
	processing = request(),
	-- Deposits can come weeks after registration: also re-read the open
	-- leads by date, a week per request ({ffrom}/{fto} are
	-- "YYYY-MM-DD HH:MM:SS" in the offer's time zone).
	dates = {
		url = "https://{host}/api/v2/affiliates/leads?from={ffrom}&to={fto}",
		headers = { Authorization = "Token {key}" },
		days = 7,
	},

	process = function(data)
		for _, d in ipairs(data) do
			local oid = e2i[d.id]
			if oid then
				if has_ftd(d.ftd) then
					lead.approve(oid, d.status)
				else
					lead.setstc(oid, d.status)
				end
			end
		end
	end,
}
