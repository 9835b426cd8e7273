-- trim(key, expired, subjects, subject): drops a subject's events at or before expired (the
-- oldest are at the tail: O(1) each) and files the subject in its scope's sorted set under its
-- oldest event, or takes it out. Returns the number of events dropped. Needs at_of.
local function trim(key, expired, subjects, subject)
  local dropped = 0
  while true do
    local last = redis.call('LINDEX', key, -1)
    if not last then redis.call('ZREM', subjects, subject); return dropped end
    if at_of(last) > expired then
      redis.call('ZADD', subjects, at_of(last), subject); return dropped
    end
    redis.call('RPOP', key)
    dropped = dropped + 1
  end
end
