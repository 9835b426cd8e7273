-- KEYS: rule keys 1..n, n+1 event counter, n+2 send queue, n+3 pause (or absent),
-- n+4 heartbeat (or absent)
-- ARGV: host µs, trust, n, per rule (limit, expired_ms, ttl_ms, subjects key, subject),
-- then has_slot, spacing_us, latest_us, has_pause, pause_cap_us, reset_after_us, has_beat,
-- beat_after_ms, beat_before_ms (host instants).
-- Returns {refused rule (1-based) or -1, freeing_at_ms, slot_refused, slot_paused,
-- slot_us, now_us, id1, at1, id2, at2, ...}, or when the heartbeat refuses
-- {0, beat_ms, beat found (1 or 0), 0, 0, now_us}: instants on the store's clock.
local now_us, now, shift, shift_us = clock()
local n = tonumber(ARGV[3])
local bk = 5 * n + 10
if ARGV[bk] == '1' then
  local beat = tonumber(redis.call('GET', KEYS[n+4]) or -1)
  if beat < 0 then return {0, 0, 0, 0, 0, now_us} end
  if beat < tonumber(ARGV[bk+1]) + shift or beat > tonumber(ARGV[bk+2]) + shift then
    return {0, beat, 1, 0, 0, now_us}
  end
end
for i = 1, n do
  local b = 5 * i - 1
  local key, limit = KEYS[i], tonumber(ARGV[b])
  trim(key, tonumber(ARGV[b+1]) + shift, ARGV[b+3], ARGV[b+4])
  local count = redis.call('LLEN', key)
  if count >= limit then
    local e = redis.call('LINDEX', key, limit - count - 1)
    return {i, e and at_of(e) or now, 0, 0, 0, now_us}
  end
end
local a = 5 * n + 4
local slot, paused = 0, 0
if ARGV[a] == '1' then
  local spacing = tonumber(ARGV[a+1])
  local latest = tonumber(ARGV[a+2]) + shift_us
  local nxt = tonumber(redis.call('GET', KEYS[n+2]) or now_us)
  if nxt > tonumber(ARGV[a+5]) + shift_us then nxt = now_us end
  slot = math.max(nxt, now_us)
  if ARGV[a+3] == '1' then
    local p = tonumber(redis.call('HGET', KEYS[n+3], 'until_ms') or 0) * 1000
    p = math.min(p, tonumber(ARGV[a+4]) + shift_us)
    if p > slot then slot = p; paused = 1 end
  end
  if slot > latest then return {-1, 0, 1, paused, slot, now_us} end
  redis.call('SET', KEYS[n+2], string.format('%.0f', slot + spacing))
end
local out = {-1, 0, 0, paused, slot, now_us}
for i = 1, n do
  local b = 5 * i - 1
  local key, at = KEYS[i], now
  -- never older than the newest: the list stays sorted even if the clock steps back
  local head = redis.call('LINDEX', key, 0)
  if head and at_of(head) > at then at = at_of(head) end
  local id = redis.call('INCR', KEYS[n+1])
  if redis.call('LPUSH', key, string.format('%.0f:%d', at, id)) == 1 then
    redis.call('ZADD', ARGV[b+3], at, ARGV[b+4])
  end
  redis.call('PEXPIRE', key, ARGV[b+2])
  out[#out+1] = id
  out[#out+1] = at
end
return out
