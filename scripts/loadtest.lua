-- wrk script for scripts/loadtest.sh: counts the answers by status and
-- checks that every 429 carries a Retry-After of a whole number of
-- seconds, at least 1.  Prints one line that loadtest.sh reads:
--
--   STATUS 200=N 429=N 503=N 504=N other=N bad_retry_after=N
--
-- Each wrk thread runs its own copy of this script; done() adds up the
-- counters of every thread.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  s200, s429, s503, s504, other, bad_ra = 0, 0, 0, 0, 0, 0
end

local function retry_after_ok(headers)
  local v = headers["Retry-After"] or headers["retry-after"]
  if v == nil or not string.match(v, "^%d+$") then
    return false
  end
  return tonumber(v) >= 1
end

function response(status, headers, body)
  if status == 200 then
    s200 = s200 + 1
  elseif status == 429 then
    s429 = s429 + 1
    if not retry_after_ok(headers) then
      bad_ra = bad_ra + 1
    end
  elseif status == 503 then
    s503 = s503 + 1
  elseif status == 504 then
    s504 = s504 + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local t = {0, 0, 0, 0, 0, 0}
  for _, thread in ipairs(threads) do
    t[1] = t[1] + thread:get("s200")
    t[2] = t[2] + thread:get("s429")
    t[3] = t[3] + thread:get("s503")
    t[4] = t[4] + thread:get("s504")
    t[5] = t[5] + thread:get("other")
    t[6] = t[6] + thread:get("bad_ra")
  end
  io.write(string.format(
    "STATUS 200=%d 429=%d 503=%d 504=%d other=%d bad_retry_after=%d\n",
    t[1], t[2], t[3], t[4], t[5], t[6]))
end
