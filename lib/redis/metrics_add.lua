-- KEYS: metrics hash; ARGV: field, delta, field, delta, ... Adds each delta to its field.
for i = 1, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i+1]) end
return 0
