-- Seed 001's general processing code, ported from PHP:
--   foreach ($data as $d) { $oid = $e2i[$d['id']]; switch ($d['status']) {
--     case 'accept': edit($oid, ['accept' => 1]); case 'cancel': edit($oid, ['status' => 5]);
--     case 'trash': edit($oid, ['status' => 5, 'reason' => 6]); } }
return {
  processing = {
    url = "https://{host}/api/orders?ids={idel}&key={key}",
    batch = 50,
    process = function(data)
      for _, d in ipairs(data) do
        local oid = e2i[d.id] -- our id by theirs
        if d.status == "accept" then
          lead.edit(oid, { accept = 1 })
        elseif d.status == "cancel" then
          lead.edit(oid, { status = 5 })
        elseif d.status == "trash" then
          lead.edit(oid, { status = 5, reason = 6 })
        end
      end
    end,
  },
}
