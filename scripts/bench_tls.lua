-- wrk script of scripts/bench_tls.sh: a GET with the headers of BENCH_AUTH (an
-- Authorization value) and BENCH_CLOSE (set: a new connection per request), and one RESULT
-- line the script reads.
local auth = os.getenv("BENCH_AUTH")
local close = os.getenv("BENCH_CLOSE")

request = function()
    local headers = {}
    if auth and auth ~= "" then headers["Authorization"] = auth end
    if close and close ~= "" then headers["Connection"] = "close" end
    return wrk.format("GET", nil, headers)
end

done = function(summary, latency, requests)
    local non2xx = summary.errors.status
    local failed = summary.errors.connect + summary.errors.read + summary.errors.write +
        summary.errors.timeout
    io.write(string.format("RESULT requests=%d non2xx=%d failed=%d seconds=%.3f p99_ms=%.2f\n",
        summary.requests, non2xx, failed, summary.duration / 1e6,
        latency:percentile(99) / 1000))
end
