-- wrk script: POST a JSON body to /invocations and print a machine-readable summary.
-- Body and content type come from BENCH_BODY (or the file BENCH_BODY_FILE, for binary and large bodies) and
-- BENCH_CONTENT_TYPE, and BENCH_ACCEPT when set (defaults: the no-op payload, no Accept header).
wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH") or "/invocations"
wrk.body = os.getenv("BENCH_BODY") or "[1, 2.5, 3]"
local body_file = os.getenv("BENCH_BODY_FILE")
if body_file then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
end
wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/json"
if os.getenv("BENCH_ACCEPT") then
  wrk.headers["Accept"] = os.getenv("BENCH_ACCEPT")
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%.1f,"mean":%.1f,"stdev":%.1f,"p50":%.1f,"p90":%.1f,"p99":%.1f,"p999":%.1f,"max":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max))
end
