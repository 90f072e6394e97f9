-- POST /interact: one like or dislike (3:1) of a random catalog item by a random user of a pool of POOL ids.
-- wrk ... -s interact.lua URL -- POOL SEED ITEMS_FILE [USER_PREFIX [DELAY_MS]] (DELAY_MS: see feed.lua)
package.path = debug.getinfo(1, "S").source:match("@?(.*/)") .. "?.lua;" .. package.path
local common = require("common")
local pool = 100000
local prefix = "bench"
local items = {}
local headers = {["Content-Type"] = "application/json"}
local pause_ms = nil

setup = common.setup
done = common.done

function init(args)
  pool = tonumber(args[1]) or pool
  math.randomseed((tonumber(args[2]) or 42) * 1000 + (thread_id or 1))
  for line in io.lines(args[3]) do
    if #line > 0 then table.insert(items, line) end
  end
  prefix = args[4] or prefix
  pause_ms = tonumber(args[5]) or 0
end

function pause()
  return pause_ms
end

function request()
  local action = (math.random(1, 4) == 1) and "dislike" or "like"
  local body = '{"user_id":"' .. prefix .. '-u' .. math.random(1, pool) .. '","item_ids":["' ..
    items[math.random(1, #items)] .. '"],"actions":["' .. action .. '"]}'
  return wrk.format("POST", "/interact", headers, body)
end
