-- A signed JSON API: the ids go in a POST body that prepare builds, the
-- body is signed with HMAC-SHA256, and the answer is wrapped and paged the
-- way KeyCRM (and Laravel-based CRMs in general) page: {data: [...],
-- current_page, last_page}. Offer parameters:
--   host    the CRM's API domain
--   api_id  our API client id, sent in a header
--   secret  the shared secret the body is signed with (never sent itself)
--
-- Request:  POST https://{host}/api/v1/orders/search
--           Content-Type: application/json
--           X-Api-Id: {api_id}
--           X-Signature: hex HMAC-SHA256 of the body with {secret}
--           {"filter":{"external_ids":["K-5501","K-5502"]},"page":1,"per_page":50}
-- Answer:   { "total": 57, "per_page": 50, "current_page": 1, "last_page": 2,
--             "data": [ { "id": "K-5501", "source_uuid": "7101",
--                         "status": { "id": 4, "alias": "confirmed", "name": "Підтверджено" },
--                         "grand_total": 1299.0, "currency": "UAH", "ordered_at": "..." } ] }
--
-- Other signing schemes are a line each, e.g. a checksum field inside the
-- body, sha1 of the ids and the key: add to the table signed() encodes
--   check_sum = hash.sha1(idel .. offer.params.secret),
-- or an MD5 of the query, a base64 HMAC (hash.hmac_sha256(k, s, true) gives
-- raw bytes, base64.encode() them), a signature with a timestamp
-- (os.time()) ... Note that json.encode writes object keys sorted, so the
-- body the CRM receives is exactly the text that was signed.

local PER_PAGE = 50

-- Body and signature of page n. Runs in prepare and in process alike: both
-- see ide (our id → external id; pairs walks it in batch order) and
-- offer.params.
local function signed(page)
	local ext = {}
	for _, e in pairs(ide) do
		ext[#ext + 1] = e
	end
	local body = json.encode({
		filter = { external_ids = json.array(ext) },
		page = page,
		per_page = PER_PAGE,
	})
	return body, hash.hmac_sha256(offer.params.secret, body)
end

return {
	-- status aliases of this CRM account that our built-in words do not know
	statuses = {
		["in_work"] = "processing",
		["no_answer"] = "callback",
		["pickup_point"] = "delivered",
		["fake"] = { status = 5, reason = 6 },
	},

	processing = {
		url = "https://{host}/api/v1/orders/search",
		method = "POST",
		headers = { ["X-Api-Id"] = "{api_id}", ["Content-Type"] = "application/json" },
		batch = PER_PAGE,

		prepare = function(request)
			local sig
			request.body, sig = signed(1)
			request.headers["X-Signature"] = sig
		end,

		process = function(data)
			if http_status ~= 200 then
				error("CRM answered " .. http_status .. ": " .. tostring(data.message))
			end
			for _, o in ipairs(data.data) do
				local status = type(o.status) == "table" and o.status.alias or o.status
				lead.setstc(e2i[o.id], status)
			end
			-- Next page: the same url, method and headers (inherited), a new
			-- body and a new signature.
			local cur, last = tonumber(data.current_page), tonumber(data.last_page)
			if cur and last and cur < last then
				local body, sig = signed(cur + 1)
				return { next = { body = body, headers = { ["X-Signature"] = sig } } }
			end
		end,
	},
}
