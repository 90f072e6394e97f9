-- interact.lua with a pause of DELAY_MS between a connection's requests: a steady feed of about
-- connections * 1000 / (DELAY_MS + latency) requests/s rather than a closed loop at full speed.
-- wrk ... -s feed.lua URL -- POOL SEED ITEMS_FILE USER_PREFIX DELAY_MS
-- (A separate file: wrk decides whether a script has delay() when it loads it, before init runs.)
dofile(debug.getinfo(1, "S").source:match("@?(.*/)") .. "interact.lua")

function delay()
  return pause()
end
