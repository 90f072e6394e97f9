"""Server-side scripts: every multi-key state change happens atomically inside Redis.

Each script first checks that the run's generation is still the one the caller read (a missing generation key
means generation 0); after a /cleanup the caller gets -1 and must refresh, so a write meant for the old run
never lands in the new one. The keys are the ones named in ``recsys_core.keys``; the scripts take them in KEYS
and never build names themselves, except ``PUBLISH_MODEL``, which deletes the blobs of versions it retires, and
``READ_USER``, which reads the user's factors of the model version it finds current.
"""

from __future__ import annotations

STALE_GENERATION = -1
NOT_LEASE_HOLDER = -2
# PUBLISH_MODEL: a newer model is served already.
OLDER_THAN_SERVED = -3

# KEYS: generation, catalog_ids, catalog_index, catalog_genres, catalog_titles, catalog_version, genre names
# ARGV: expected generation, then triples (item id, genres JSON or "", title or "")
# Returns {added, updated, catalog size} or {-1}.
ADD_ITEMS = """
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return {-1} end
redis.call('SET', KEYS[1], ARGV[1], 'NX')  -- pins the run (see RESTORE_GENERATION)
local added, updated = 0, 0
for i = 2, #ARGV, 3 do
  local item = ARGV[i]
  if redis.call('HEXISTS', KEYS[3], item) == 1 then
    updated = updated + 1
  else
    local size = redis.call('RPUSH', KEYS[2], item)
    redis.call('HSET', KEYS[3], item, size - 1)
    added = added + 1
  end
  if ARGV[i + 1] ~= '' then
    redis.call('HSET', KEYS[4], item, ARGV[i + 1])
    for _, genre in ipairs(cjson.decode(ARGV[i + 1])) do redis.call('SADD', KEYS[7], genre) end
  end
  if ARGV[i + 2] ~= '' then redis.call('HSET', KEYS[5], item, ARGV[i + 2]) end
end
redis.call('INCR', KEYS[6])
return {added, updated, redis.call('LLEN', KEYS[2])}
"""

# What a /recs request reads first, in one command and at one instant: the run's versions and the user's state,
# with the user's factors in the current model (its key is built from the pointer read here, like PUBLISH_MODEL's).
# KEYS: generation, catalog version, bandit version, model pointer, co-likes version, user shown, user history,
# user twins, the dataset mark
# ARGV: the run's key base, user id
# Returns {generation, catalog, bandit, model, co_likes (each nil when unset), shown ids, history entries,
# the user's factors in that model (nil when none), the user's twin lift (nil when none), the dataset mark}.
# The mark is set from the server's clock when missing (a new or emptied Redis), once: SET NX semantics, since
# a script runs alone.
READ_USER = """
local reply = {}
for i = 1, 5 do
  reply[i] = redis.call('GET', KEYS[i]) or false
end
reply[6] = redis.call('SMEMBERS', KEYS[6])
reply[7] = redis.call('LRANGE', KEYS[7], 0, -1)
reply[8] = false
if reply[4] then
  reply[8] = redis.call('HGET', ARGV[1] .. ':model:' .. reply[4] .. ':users', ARGV[2]) or false
end
reply[9] = redis.call('GET', KEYS[8]) or false
local mark = redis.call('GET', KEYS[9])
if not mark then
  local now = redis.call('TIME')
  mark = now[1] .. '.' .. now[2]
  redis.call('SET', KEYS[9], mark)
end
reply[10] = mark
return reply
"""

# Per-user tallies of an experiment group, shared by the claim and store scripts. With the group's likes and
# impressions, the sums of users, likes², impressions² and likes × impressions give the per-user (delta-method)
# interval of its like rate in recsys_core.experiments: a user's impressions are not independent draws.
# A tally is a hash per user: g (the group, set once), n (impressions counted), l (likes counted).
_AB_TALLIES = """
local function ab_join(counters, tally, group)
  if redis.call('HSETNX', tally, 'g', group) == 1 then
    redis.call('HINCRBY', counters, 'users:' .. group, 1)
  end
end
local function ab_like(counters, tally, group)
  ab_join(counters, tally, group)
  local likes = redis.call('HINCRBY', tally, 'l', 1)
  local shown = tonumber(redis.call('HGET', tally, 'n') or '0')
  redis.call('HINCRBY', counters, 'likes_sq:' .. group, 2 * likes - 1)
  redis.call('HINCRBY', counters, 'likes_x_impressions:' .. group, shown)
end
local function ab_shown(counters, tally, group, count)
  ab_join(counters, tally, group)
  local shown = redis.call('HINCRBY', tally, 'n', count)
  local before = shown - count
  local likes = tonumber(redis.call('HGET', tally, 'l') or '0')
  redis.call('HINCRBY', counters, 'impressions_sq:' .. group, shown * shown - before * before)
  redis.call('HINCRBY', counters, 'likes_x_impressions:' .. group, likes * count)
end
"""

# Claims up to k candidates the user has not been shown (SADD == 1), in order, and records the impressions (also
# per experiment group: the live A/B counters of recsys_core.experiments.group_outcomes).
# KEYS: generation, user shown set, item impressions, user sources, recs log, counters, the user's A/B tally
# ARGV: expected generation, k, group, user id, timestamp, recs log cap, then the candidates as one string of
# "item<TAB>source" lines (ids and sources never hold whitespace): one argument instead of two per candidate
# keeps the client's command packing cheap. Returns the claimed ids, or {-1}.
CLAIM_RECOMMENDATIONS = (
    _AB_TALLIES
    + """
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return {-1} end
local k = tonumber(ARGV[2])
local chosen = {}
for item, source in string.gmatch(ARGV[7], '([^\\t\\n]+)\\t([^\\n]*)') do
  if #chosen >= k then break end
  if redis.call('SADD', KEYS[2], item) == 1 then
    chosen[#chosen + 1] = item
    redis.call('HINCRBY', KEYS[3], item, 1)
    redis.call('HSET', KEYS[4], item, source .. '|' .. ARGV[3])
  end
end
if #chosen > 0 then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[6], '*',
    'user', ARGV[4], 'group', ARGV[3], 'ts', ARGV[5], 'items', table.concat(chosen, ','))
end
redis.call('HINCRBY', KEYS[6], 'recs', 1)
redis.call('HINCRBY', KEYS[6], 'impressions', #chosen)
redis.call('HINCRBY', KEYS[6], 'recs:' .. ARGV[3], 1)
redis.call('HINCRBY', KEYS[6], 'impressions:' .. ARGV[3], #chosen)
if #chosen > 0 then
  ab_shown(KEYS[6], KEYS[7], ARGV[3], #chosen)
end
return chosen
"""
)

# Stores the events of a batch of messages of one run, each atomically, in one call (a call per message cost the
# pipeline more in building and parsing commands than Redis spent running them). A call is idempotent: its replies
# are kept for ARGV[3] seconds under its own key, and a retry with the same key gets them back unchanged, so a
# reply lost with the connection does not turn the call's own messages into "redeliveries" the caller never applied.
# Only the pipeline holding the lease stores (a fence): a process that lost it while paused gets -2 for every message,
# stores nothing and must not ack them, so the new holder, which reloaded the run from Redis, misses no event.
# KEYS: generation, seen messages, events stream, item likes, item dislikes, counters, this call's replies, the
#       pipeline lease, then per message its user's feedback hash, history list and A/B tally
# ARGV: expected generation, history cap, replies TTL in seconds, the caller's lease token ("": no lease checked),
#       then per message: message id, user id, timestamp, group, number of (item id, action) pairs, the pairs
# Returns, per message in order: 1 (stored), 0 (a redelivery of a stored message), -1 (all: an older run) or -2 (all:
# the caller does not hold the lease).
STORE_EVENTS = (
    _AB_TALLIES
    + """
local n = (#KEYS - 8) / 3
local earlier = redis.call('GET', KEYS[7])
if earlier then return cjson.decode(earlier) end
local function all(code)
  local same = {}
  for m = 1, n do same[m] = code end
  return same
end
if ARGV[4] ~= '' and redis.call('GET', KEYS[8]) ~= ARGV[4] then return all(-2) end
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return all(-1) end
redis.call('SET', KEYS[1], ARGV[1], 'NX')  -- pins the run (see RESTORE_GENERATION)
local cap = tonumber(ARGV[2])
local results = {}
local a = 5
for m = 1, n do
  local id, user, ts, group, pairs = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], tonumber(ARGV[a + 4])
  local first, feedback, history, tally = a + 5, KEYS[6 + 3 * m], KEYS[7 + 3 * m], KEYS[8 + 3 * m]
  a = first + 2 * pairs
  if redis.call('SADD', KEYS[2], id) == 0 then
    redis.call('HINCRBY', KEYS[6], 'duplicates', 1)
    results[m] = 0
  else
    for i = first, a - 1, 2 do
      local item, action = ARGV[i], ARGV[i + 1]
      redis.call('XADD', KEYS[3], '*', 'msg', id, 'user', user, 'item', item, 'action', action, 'ts', ts,
        'group', group)
      if action == 'like' then
        redis.call('HINCRBY', KEYS[4], item, 1)
      else
        redis.call('HINCRBY', KEYS[5], item, 1)
      end
      redis.call('HINCRBY', KEYS[6], action .. 's:' .. group, 1)
      if action == 'like' then
        ab_like(KEYS[6], tally, group)
      end
      redis.call('HSET', feedback, item, action)
      redis.call('LPUSH', history, cjson.encode({item_id = item, action = action, ts = tonumber(ts)}))
    end
    redis.call('LTRIM', history, 0, cap - 1)
    redis.call('HINCRBY', KEYS[6], 'messages', 1)
    redis.call('HINCRBY', KEYS[6], 'events', pairs)
    results[m] = 1
  end
end
redis.call('SET', KEYS[7], cjson.encode(results), 'EX', ARGV[3])
return results
"""
)

# The run's generation does not go back after Redis lost its data (a restart without persistence): its key is
# gone, and the events already stamped with the run before (queued in RabbitMQ, or stamped by a collector that
# had not re-read it yet) would be dropped as an older run's after their 200. A collector or pipeline that saw a
# later generation puts it back, but only while the key is absent: once anything wrote a run after the loss
# (/cleanup's INCR, or ADD_ITEMS and STORE_EVENTS, which pin the run they write to), that run stays current.
# KEYS: generation   ARGV: the latest generation the caller saw
# Returns {the generation now, 1 if this call restored it else 0}.
RESTORE_GENERATION = """
local current = redis.call('GET', KEYS[1])
local seen = tonumber(ARGV[1])
if not current and seen > 0 then
  redis.call('SET', KEYS[1], seen)
  return {seen, 1}
end
return {tonumber(current or '0'), 0}
"""

# The run's uid, set once by whichever process asks first, only while it is the current run (a key set for an
# older run after its /cleanup deleted its keys would stay forever).
# KEYS: generation, the run's uid key
# ARGV: expected generation, a fresh uid to set if there is none
# Returns the run's uid, or nil for an older run.
RUN_UID_IF_CURRENT = """
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return false end
redis.call('SET', KEYS[2], ARGV[2], 'NX')
return redis.call('GET', KEYS[2])
"""

# The next model version of a run, only while it is the current one: a retrain that outlived its run's /cleanup
# must not recreate the old run's keys after they were deleted.
# KEYS: generation, the run's model counter
# ARGV: expected generation
INCR_MODEL_COUNTER = """
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return -1 end
return redis.call('INCR', KEYS[2])
"""

# Adds members to a set, unless a /cleanup started another run meanwhile (which deleted the old run's keys).
# KEYS: generation, set   ARGV: expected generation, members...
SADD_IF_CURRENT = """
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return -1 end
return redis.call('SADD', KEYS[2], unpack(ARGV, 2))
"""

# Replaces a hash (DEL, then HSET): no field of an older write survives. KEYS: generation, hash
# ARGV: expected generation, then field/value pairs
REPLACE_HASH_IF_CURRENT = """
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[2])
return redis.call('HSET', KEYS[2], unpack(ARGV, 2))
"""

# Adds fields to the pipeline's status hash only while it still describes the given model version (an MLflow
# run id that came late must not land on a newer model's status). KEYS: generation, status hash
# ARGV: expected generation, model version, then field/value pairs
HSET_IF_MODEL = """
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return -1 end
if redis.call('HGET', KEYS[2], 'model_version') ~= ARGV[2] then return 0 end
return redis.call('HSET', KEYS[2], unpack(ARGV, 3))
"""

# The pipeline's publications below (and PUBLISH_MODEL's flip) are fenced by its lease as well as by the run: a
# paused ex-leader whose local check passed before the pause must not overwrite what the new leader published
# (nothing would correct it until the new leader's state changed). ``fence(generation key, expected generation,
# lease key, the caller's lease token ("": no lease checked))`` returns -1 (an older run), -2 (the caller does not
# hold the lease) or 0 (write). The publications take KEYS[1], KEYS[2] = generation, lease and ARGV[1], ARGV[2] =
# expected generation, token.
_PUBLICATION_FENCE = """
local function fence(generation_key, generation, lease_key, token)
  if (redis.call('GET', generation_key) or '0') ~= generation then return -1 end
  if token ~= '' and redis.call('GET', lease_key) ~= token then return -2 end
  return 0
end
"""

# Writes string values that expire (the twins' lifts), fenced as above.
# KEYS: generation, pipeline lease, then the keys to write
# ARGV: expected generation, lease token, TTL in seconds, then one value per key
SET_IF_CURRENT = (
    _PUBLICATION_FENCE
    + """
local refused = fence(KEYS[1], ARGV[1], KEYS[2], ARGV[2])
if refused ~= 0 then return refused end
for i = 3, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ARGV[3])
end
return #KEYS - 2
"""
)

# Fields of a hash (the twin links), fenced as above.
# KEYS: generation, pipeline lease, the hash   ARGV: expected generation, lease token, then field, value pairs
HSET_IF_CURRENT = (
    _PUBLICATION_FENCE
    + """
local refused = fence(KEYS[1], ARGV[1], KEYS[2], ARGV[2])
if refused ~= 0 then return refused end
return redis.call('HSET', KEYS[3], unpack(ARGV, 3))
"""
)

# A bandit snapshot or co-likes blob and its version, fenced as above.
# KEYS: generation, pipeline lease, the blob, its version   ARGV: expected generation, lease token, the blob
PUBLISH_SNAPSHOT = (
    _PUBLICATION_FENCE
    + """
local refused = fence(KEYS[1], ARGV[1], KEYS[2], ARGV[2])
if refused ~= 0 then return refused end
redis.call('SET', KEYS[3], ARGV[3])
return redis.call('INCR', KEYS[4])
"""
)

# Deletes the keys of one model version (its blob, meta and users' factors), shared by the scripts below.
_DELETE_MODEL_VERSION = """
local function delete_model_version(base, version)
  local prefix = base .. ':model:' .. version
  return redis.call('DEL', prefix .. ':blob', prefix .. ':meta', prefix .. ':users')
end
"""

# KEYS: generation, model current pointer, model versions zset, pipeline lease
# ARGV: expected generation, version, versions to keep, run key base ("{prefix}:g{n}"), lease token ("": no lease)
# The blob, meta and user factors of the version were written before; this flips the pointer and retires old
# versions. A publisher that no longer holds the lease, or a version older than the one served (a paused
# ex-leader's late model), is refused and its keys deleted: the pointer never goes back nor names a retired blob.
PUBLISH_MODEL = (
    _DELETE_MODEL_VERSION
    + _PUBLICATION_FENCE
    + """
local refused = fence(KEYS[1], ARGV[1], KEYS[4], ARGV[5])
if refused == -1 then return -1 end
local version = tonumber(ARGV[2])
if refused == 0 and version < tonumber(redis.call('GET', KEYS[2]) or '0') then
  refused = -3
end
if refused ~= 0 then
  delete_model_version(ARGV[4], version)
  return refused
end
redis.call('SET', KEYS[2], version)
redis.call('ZADD', KEYS[3], version, version)
local keep = tonumber(ARGV[3])
local old = redis.call('ZRANGE', KEYS[3], 0, -(keep + 1))
for _, v in ipairs(old) do
  delete_model_version(ARGV[4], v)
  redis.call('ZREM', KEYS[3], v)
end
return version
"""
)

# Deletes a model version's keys unless the pointer names it (a publication whose reply was lost may have
# flipped it). KEYS: model current pointer   ARGV: version, run key base
DELETE_MODEL_IF_NOT_CURRENT = (
    _DELETE_MODEL_VERSION
    + """
if tonumber(redis.call('GET', KEYS[1]) or '0') == tonumber(ARGV[1]) then return 0 end
return delete_model_version(ARGV[2], ARGV[1])
"""
)

# The pipeline lease (pipeline/leadership.py). KEYS: the lease, the lease epoch.
# Takes a free lease: ARGV token, TTL in ms. Returns the new epoch, or 0 while another process holds it.
ACQUIRE_LEASE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return epoch
"""

# Extends the caller's lease: ARGV token, TTL in ms, the caller's epoch. A lease that expired while nobody else took
# it (its epoch unchanged, e.g. Redis was unreachable for longer than the TTL) is taken back: no other process
# stored or published meanwhile, so the caller's state is still whole. Returns 1 (held) or 0 (lost).
RENEW_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

# Frees the caller's lease (a clean stop), so a standby takes over at once. ARGV: token. Returns 1 if it was held.
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
