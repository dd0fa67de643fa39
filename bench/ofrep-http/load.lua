-- wrk script for bench/ofrep-http/run.sh: one POST per request with a random targeting key and a
-- random country (one of the 10 the flag lists draw from), and one result line at the end.
--
-- Environment:
--   BENCH_TARGET  ofrep-bulk | ofrep-single | unleash-frontend | unleash-all | unleash-single
--   BENCH_AUTH    the SDK key (Signalbox, sent as X-API-Key) or frontend token (unleash-edge,
--                 sent as Authorization)
--   BENCH_KEYS    file with the flag keys, one a line (single-flag targets pick one at random)
--
-- Bodies: OFREP   {"context":{"targetingKey":"user-N","country":"XX"}}
--         Unleash {"context":{"userId":"user-N","properties":{"country":"XX"}}}

local target = os.getenv("BENCH_TARGET") or "ofrep-bulk"
local auth = os.getenv("BENCH_AUTH") or ""
local keys_file = os.getenv("BENCH_KEYS")
local countries = { "NO", "SE", "DK", "FI", "DE", "FR", "NL", "BE", "ES", "IT" }

local keys = {}
if keys_file then
  for line in io.lines(keys_file) do
    if line ~= "" then keys[#keys + 1] = line end
  end
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if target:sub(1, 5) == "ofrep" then
  wrk.headers["X-API-Key"] = auth
else
  wrk.headers["Authorization"] = auth
end

local thread_id = 0
function setup(thread)
  thread_id = thread_id + 1
  thread:set("id", thread_id)
end

function init(args)
  -- Different sequences per thread and per run; user ids from a space of 10^9.
  math.randomseed(os.time() * 1000 + (id or 0) * 7919)
end

function request()
  local user = "user-" .. math.random(1, 1000000000)
  local country = countries[math.random(1, #countries)]
  local path, body
  if target == "ofrep-bulk" then
    path = "/ofrep/v1/evaluate/flags"
    body = '{"context":{"targetingKey":"' .. user .. '","country":"' .. country .. '"}}'
  elseif target == "ofrep-single" then
    path = "/ofrep/v1/evaluate/flags/" .. keys[math.random(1, #keys)]
    body = '{"context":{"targetingKey":"' .. user .. '","country":"' .. country .. '"}}'
  else
    if target == "unleash-frontend" then
      path = "/api/frontend"
    elseif target == "unleash-all" then
      path = "/api/frontend/all"
    else
      path = "/api/frontend/features/" .. keys[math.random(1, #keys)]
    end
    body = '{"context":{"userId":"' .. user .. '","properties":{"country":"' .. country .. '"}}}'
  end
  return wrk.format(nil, path, nil, body)
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.1f requests=%d p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f status_errors=%d socket_errors=%d bytes_per_response=%.0f\n",
    summary.requests / seconds, summary.requests,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.status, e.connect + e.read + e.write + e.timeout,
    summary.bytes / math.max(summary.requests, 1)))
end
