-- wrk script: POST /v1/runs with a JSON body and the API key from the
-- environment (RS_BENCH_KEY), keep-alive connections.
wrk.method = "POST"
wrk.body = '{"agent":"bench","input":{"n":1,"note":"wrk"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("RS_BENCH_KEY")
