-- at_of(e): the instant of a rate event "<at_ms>:<id>".
-- Lua numbers are doubles: integers up to 2^53 are exact (ms and µs since the epoch are far
-- below); string.format('%.0f') writes them without an exponent.
local function at_of(e) return tonumber(string.match(e, '^(%-?%d+)')) end
