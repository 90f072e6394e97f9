-- GET /recs/<user>?k=10 where <user> is drawn uniformly from a pool of POOL ids (most requests: a new user).
-- wrk ... -s recs.lua URL -- POOL SEED
package.path = debug.getinfo(1, "S").source:match("@?(.*/)") .. "?.lua;" .. package.path
local common = require("common")
local pool = 100000
local prefix = "bench"

setup = common.setup
done = common.done

function init(args)
  pool = tonumber(args[1]) or pool
  prefix = args[3] or prefix
  math.randomseed((tonumber(args[2]) or 42) * 1000 + (thread_id or 1))
end

function request()
  return wrk.format("GET", "/recs/" .. prefix .. "-u" .. math.random(1, pool) .. "?k=10")
end
