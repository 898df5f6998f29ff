-- wrk script for keng-ingest's benchmark (scripts/bench_ingest.sh): POSTs incidents with a
-- bearer token, BENCH_BATCH events per request (1: a single JSON object; more: an array).
-- Every event gets a fresh event_id; boards come from the registry file BENCH_BOARDS.
-- At the end it prints one machine-readable line:
--   RESULT requests=N non2xx=N errors=N seconds=S p50_ms=X p99_ms=X

local batch = tonumber(os.getenv("BENCH_BATCH") or "100")
local token = os.getenv("BENCH_TOKEN") or ""
local boards_file = os.getenv("BENCH_BOARDS") or "boards.txt"
-- Each connection waits this long before each request: with C connections the offered rate
-- is about C * 1000 / (BENCH_DELAY_MS + latency) requests/s, for latency at a fixed load.
local pace_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")

local boards = {}
local templates = {} -- the parts of an event around its event_id
local thread_id = 0
local counter = 0
local threads = {}

local categories = {"THEFT", "ASSAULT", "PUBLIC_DISORDER", "DRUGS", "GAMBLING", "TRAFFIC", "FRAUD", "OTHER"}
local severities = {"LOW", "MEDIUM", "HIGH", "CRITICAL"}
local resolutions = {"PENDING", "HANDLED_LOCALLY", "TRANSFERRED_TO_POLICE"}
local sources = {"MOBILE_APP", "SMS", "HOTLINE", "PATROL", "CAMERA", "OTHER"}

function setup(thread)
   thread:set("thread_id", #threads + 1)
   table.insert(threads, thread)
end

local function pick(t)
   return t[math.random(#t)]
end

function init(args)
   math.randomseed(os.time() + thread_id * 7919)
   for line in io.lines(boards_file) do
      if #line > 0 then
         table.insert(boards, line)
      end
   end
   local now_ms = os.time() * 1000
   for i = 1, 512 do
      local occurred = now_ms - math.random(3600, 30 * 86400) * 1000
      templates[i] = string.format(
         '","board_id":"%s","occurred_at":%d,"category":"%s","severity":"%s",' ..
         '"resolution":"%s","people_involved":%d,"source":"%s","location":{"lat":%.6f,"lon":%.6f},' ..
         '"summary":"Trộm cắp xe máy tại thôn"}',
         pick(boards), occurred, pick(categories), pick(severities), pick(resolutions),
         math.random(0, 12), pick(sources), 18.5 + math.random() * 1.5, 103.8 + math.random() * 2)
   end
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Authorization"] = "Bearer " .. token
end

if pace_ms > 0 then
   function delay()
      return pace_ms
   end
end

function request()
   local parts = {}
   local n = 0
   counter = counter + 1
   if batch > 1 then
      n = n + 1
      parts[n] = "["
   end
   for i = 1, batch do
      if i > 1 then
         n = n + 1
         parts[n] = ","
      end
      n = n + 1
      parts[n] = string.format('{"event_id":"b%d-%d-%d', thread_id, counter, i)
      n = n + 1
      parts[n] = templates[math.random(#templates)]
   end
   if batch > 1 then
      n = n + 1
      parts[n] = "]"
   end
   return wrk.format(nil, nil, nil, table.concat(parts))
end

function done(summary, latency, requests)
   io.write(string.format(
      "RESULT requests=%d non2xx=%d errors=%d seconds=%.3f p50_ms=%.3f p99_ms=%.3f\n",
      summary.requests, summary.errors.status,
      summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
      summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
