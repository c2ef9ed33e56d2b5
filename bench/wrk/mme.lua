-- wrk script for a multi-model endpoint: POST the body to /models/<name>/invoke, the names taken in turn from
-- BENCH_MODEL_NAMES (comma-separated), so every loaded model gets its share. post.lua (beside this file) gives
-- the body settings and the summary line.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "post.lua")
local names = {}
for name in string.gmatch(os.getenv("BENCH_MODEL_NAMES") or "", "[^,]+") do
  names[#names + 1] = name
end
assert(#names > 0, "BENCH_MODEL_NAMES is empty")
local turn = 0

request = function()
  turn = turn + 1
  return wrk.format("POST", "/models/" .. names[(turn % #names) + 1] .. "/invoke")
end
