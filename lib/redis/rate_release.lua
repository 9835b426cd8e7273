-- KEYS: list, subjects; ARGV: member, subject. Gives one event back.
redis.call('LREM', KEYS[1], 1, ARGV[1])
local last = redis.call('LINDEX', KEYS[1], -1)
if last then redis.call('ZADD', KEYS[2], at_of(last), ARGV[2])
else redis.call('ZREM', KEYS[2], ARGV[2]) end
return 0
