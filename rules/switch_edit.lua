-- A rule that decides each status itself (seed 001's general processing
-- code): the CRM answers a JSON list of {id, status, ...} and a switch on
-- the status word calls lead.edit with exactly the fields to change.
-- Use this form when the CRM's words need more than a status (a reason, a
-- hold, a comment) or when you do not want the built-in words at all: a
-- word no branch names is simply left alone. Offer parameters:
--   host, key
--
-- Request:  GET https://{host}/api/orders?ids=A-17,A-18&key={key}
-- Answer:   [ {"id": "A-17", "status": "accept"}, {"id": "A-18", "status": "trash", "comment": "test order"} ]
--
-- PHP original:
--   foreach ($data as $d) {
--     $oid = $e2i[$d['id']];
--     switch ($d['status']) {
--       case 'accept': $core->lead->edit($oid, ['accept' => 1]); break;
--       case 'cancel': $core->lead->edit($oid, ['status' => 5]); break;
--       case 'trash':  $core->lead->edit($oid, ['status' => 5, 'reason' => 6]); break;
--     }
--   }
--
-- lead.edit fields: accept = 1 (approve: payouts computed, use this rather
-- than status 6), status (1..12), reason (the network's reject reasons,
-- 1..17 standard), hold (true: the offer's hold days, or a number of
-- days), comment, base, counts, curr, goal, track, cash = {wm, pay, ref, cc}.
-- Our statuses: 2 processing, 3 callback, 4 hold, 5 cancelled, 6 packing
-- (approved) ... 10 paid, 11 returned, 12 deleted. Reasons: 2 changed mind,
-- 6 trash or test, 7 duplicate, 11 could not get through, 12 fraud ...

return {
	processing = {
		url = "https://{host}/api/orders?ids={idel}&key={key}",
		batch = 50,
		process = function(data)
			for _, d in ipairs(data) do
				local oid = e2i[d.id] -- our id by theirs; nil when not ours (skipped, counted)
				local s = string.lower(tostring(d.status)) -- "Accept" and "accept" alike
				if s == "accept" then
					lead.edit(oid, { accept = 1 })
				elseif s == "cancel" then
					lead.edit(oid, { status = 5 }) -- the offer's default reason
				elseif s == "trash" then
					lead.edit(oid, { status = 5, reason = 6 })
				elseif s == "double" then
					lead.edit(oid, { status = 5, reason = 7, comment = d.comment })
				elseif s == "noanswer" then
					lead.edit(oid, { status = 5, reason = 11 })
				elseif s == "recall" then
					lead.edit(oid, { status = 3, comment = d.comment })
				elseif s == "hold" then
					lead.edit(oid, { hold = true }) -- approve later, after the offer's hold days
				end
				-- "new", "processing" and anything else: nothing to change
			end
		end,
	},
}
