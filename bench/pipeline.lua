-- HTTP pipelining for wrk: each write carries DEPTH requests for the URL's
-- path (default 16).  wrk -s bench/pipeline.lua URL -- DEPTH
local request_batch

init = function(args)
  local depth = tonumber(args[1]) or 16
  local requests = {}
  for i = 1, depth do
    requests[i] = wrk.format(nil)
  end
  request_batch = table.concat(requests)
end

request = function()
  return request_batch
end
