-- clock(): one clock for every host. A script that keeps or compares instants reads the store's
-- own clock (TIME), and ARGV[1] is the calling host's clock (µs) when it built the call, so that
-- an instant it sends (its now + a duration) is moved onto the store's clock: shifted by
-- (store - host). A host's clock thus only measures durations and never decides an instant.
-- ARGV[2] '1' takes the host's clock as the store's (clock=host: one host, or tests that set the
-- time). Returns now (µs), now (ms) and the shifts to add to a host's instant in ms and in µs.
local function clock()
  local host_us = tonumber(ARGV[1])
  local now_us = host_us
  if ARGV[2] ~= '1' then
    local t = redis.call('TIME')
    now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  local now = math.floor(now_us / 1000)
  return now_us, now, now - math.floor(host_us / 1000), now_us - host_us
end
