-- wrk driver for the max-throughput comparisons (k6 saturates near 25k req/s
-- on 2 cores, wrk does not). Every request is a fresh one: unique event ids
-- and network references, a random seeded card or account.
--
--   wrk -t2 -c64 -d15s -s load-tests/wrk/cellbank.lua URL -- MODE DATAFILE [TOKEN] [BATCH]
--
-- MODE      auth_global    POST /v1/authorizations {pan,...}          DATAFILE: one PAN a line
--           auth_internal  POST /internal/v1/authorizations (shard or nginx peer)
--                                                   DATAFILE: "customer_id epoch pan_hash" a line
--           event          POST /v1/events (a deposit)                 DATAFILE: one account number a line
--           batch          POST /v1/events/batch with BATCH deposits  DATAFILE: as for event
-- TOKEN     the bearer token: the partner key for auth_global, event and batch
--           (scopes authorizations / events), the shard's own internal token for
--           auth_internal; "-" for none
-- At the end it prints one line `WRKJSON {...}`: requests, seconds, req/s,
-- latency percentiles (ms), socket errors, non-2xx, and unexpected answers
-- (not approved / not accepted).

local threads = {}
local tid_counter = 0

function setup(thread)
  tid_counter = tid_counter + 1
  thread:set("tid", tid_counter)
  table.insert(threads, thread)
end

local mode, items, token, batch = nil, {}, nil, 1
local counter = 0
bad = 0 -- global: done() reads it from every thread
local stamp = tostring(os.time())

function init(args)
  mode = args[1]
  local file = assert(io.open(args[2], "r"), "cannot read " .. tostring(args[2]))
  for line in file:lines() do
    if #line > 0 then
      local fields = {}
      for f in line:gmatch("%S+") do table.insert(fields, f) end
      table.insert(items, fields)
    end
  end
  file:close()
  assert(#items > 0, "no data in " .. args[2])
  token = args[3]
  batch = tonumber(args[4] or "1") or 1
  math.randomseed(os.time() + (tid or 0) * 7919)
  wrk.method = "POST"
  wrk.headers["content-type"] = "application/json"
  if token and token ~= "-" then wrk.headers["authorization"] = "Bearer " .. token end
  if mode == "auth_global" then wrk.path = "/v1/authorizations"
  elseif mode == "auth_internal" then wrk.path = "/internal/v1/authorizations"
  elseif mode == "event" then wrk.path = "/v1/events"
  elseif mode == "batch" then wrk.path = "/v1/events/batch"
  else error("unknown mode " .. tostring(mode)) end
end

local function uid(prefix)
  counter = counter + 1
  return prefix .. "-" .. stamp .. "-" .. tostring(tid) .. "-" .. counter
end

local function pick()
  return items[math.random(#items)]
end

local merchant = '"merchant":{"name":"Padaria Load Test","mcc":"5411","country":"BR"}'

local function deposit()
  return '{"event_id":"' .. uid("wev") .. '","type":"deposit","account_number":"' .. pick()[1]
    .. '","amount":' .. math.random(100, 999) .. ',"currency":"BRL","occurred_at":"'
    .. os.date("!%Y-%m-%dT%H:%M:%SZ") .. '"}'
end

function request()
  local body
  if mode == "auth_global" then
    body = '{"pan":"' .. pick()[1] .. '","amount":' .. math.random(100, 9999)
      .. ',"currency":"BRL",' .. merchant .. ',"network_reference":"' .. uid("wauth") .. '"}'
  elseif mode == "auth_internal" then
    local c = pick()
    body = '{"customer_id":"' .. c[1] .. '","epoch":' .. c[2] .. ',"pan_hash":"' .. c[3]
      .. '","amount":' .. math.random(100, 9999) .. ',"currency":"BRL",' .. merchant
      .. ',"network_reference":"' .. uid("wauth") .. '"}'
  elseif mode == "event" then
    body = deposit()
  else
    local parts = {}
    for i = 1, batch do parts[i] = deposit() end
    body = '{"events":[' .. table.concat(parts, ",") .. ']}'
  end
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  local ok
  if mode == "event" then ok = status == 202
  elseif mode == "batch" then ok = status == 200 and body:find('"rejected":0', 1, true) ~= nil
  else ok = status == 200 and body:find('"approved"', 1, true) ~= nil end
  if not ok then
    bad = bad + 1
    if bad <= 3 then io.stderr:write("unexpected answer " .. status .. ": " .. body:sub(1, 300) .. "\n") end
  end
end

function done(summary, latency, requests)
  local unexpected = 0
  for _, t in ipairs(threads) do unexpected = unexpected + (t:get("bad") or 0) end
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,'
      .. '"p999_ms":%.3f,"max_ms":%.3f,"socket_errors":%d,"non_2xx":%d,"unexpected":%d}\n',
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000,
    e.connect + e.read + e.write + e.timeout, e.status, unexpected))
end
