-- Seed 001's financial form: approve on a first deposit, else read the status:
--   foreach ($data as $d) { $oid = $e2i[$d['id']]; if (!$oid) continue;
--     if ($d['ftd']) approve($oid, $d['status']); else setstc($oid, $d['status']); }
return {
  processing = {
    url = "https://{host}/api/leads?ids={idel}",
    process = function(data)
      for _, d in ipairs(data) do
        local oid = e2i[d.id]
        if oid then
          if d.ftd and d.ftd ~= 0 then
            lead.approve(oid, d.status)
          else
            lead.setstc(oid, d.status)
          end
        end
      end
    end,
  },
}
