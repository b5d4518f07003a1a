-- wrk script of bench.harness.wrk: one closed-loop load generator for every served figure.
-- Arguments (after `--`): a file of prepared requests, one a line, "METHOD<TAB>PATH<TAB>BODY"
-- (BODY, JSON, empty for a GET); a marker; how many times a good answer holds the marker; the
-- request to start at. Connections cycle through the requests; an answer that is not a 200
-- holding the marker that many times counts as bad. done() prints one JSON line.
local requests, marker, least, next_request = {}, nil, 1, 0
local threads = {}
bad = 0 -- global, so that done() can read each thread's count

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    local method, path, body = line:match("^(%u+)\t([^\t]+)\t(.*)$")
    local headers = {}
    if body == "" then
      body = nil
    else
      headers["Content-Type"] = "application/json"
    end
    requests[#requests + 1] = wrk.format(method, path, headers, body)
  end
  marker, least = args[2], tonumber(args[3])
  next_request = tonumber(args[4] or "0") % #requests
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end

function response(status, headers, body)
  local _, found = body:gsub(marker, "")
  if status ~= 200 or found < least then
    bad = bad + 1
  end
end

function done(summary, latency, _)
  local bad_answers = 0
  for _, thread in ipairs(threads) do
    bad_answers = bad_answers + thread:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.6f, "p50_ms": %.3f, "p99_ms": %.3f, "bad": %d, '
    .. '"errors": %d}\n', summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, bad_answers,
    e.connect + e.read + e.write + e.timeout))
end
