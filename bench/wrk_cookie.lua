-- wrk sends the bench's login cookie, read from its environment (bench/wrk.py), and counts
-- every answer but 200: a lost cookie answers 302 (the login page), which wrk itself counts
-- as a success.
wrk.headers["Cookie"] = "sessionid=" .. os.getenv("BENCH_WRK_SESSION_COOKIE")

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  not_ok = 0
end

function response(status, headers, body)
  if status ~= 200 then
    not_ok = not_ok + 1
  end
end

function done(summary, latency, requests)
  local n = 0
  for _, thread in ipairs(threads) do
    n = n + thread:get("not_ok")
  end
  io.write(string.format("Not 200: %d\n", n))
end
