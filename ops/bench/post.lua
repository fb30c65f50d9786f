-- wrk script for the Turnout benchmark: POST a small chat completion request and print
-- one JSON line with the numbers run.py needs (wrk's latency histogram is in microseconds).
-- The body comes from the BENCH_BODY environment variable (run.py sets it). errors.status
-- counts answers with a status of 400 or more.

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
    or '{"model":"bench","messages":[{"role":"user","content":"Say hello."}]}'
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
