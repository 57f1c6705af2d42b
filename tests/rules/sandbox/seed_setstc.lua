-- Seed 001's short form: foreach ($data as $d) $core->lead->setstc($e2i[$d['id']], $d['status']);
return {
  processing = {
    url = "https://{host}/api/orders?ids={idel}",
    process = function(data)
      for _, d in ipairs(data) do lead.setstc(e2i[d.id], d.status) end
    end,
  },
}
