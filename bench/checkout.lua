-- wrk script: POST /checkout of one unit of the product whose id is in $BENCH_PRODUCT_ID.
local product = os.getenv("BENCH_PRODUCT_ID") or "1"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"product_id": ' .. product .. ', "quantity": 1}'

local counter = 0
request = function()
  counter = counter + 1
  wrk.headers["X-Correlation-ID"] = "bench-" .. counter
  return wrk.format(nil, nil, nil, wrk.body)
end
