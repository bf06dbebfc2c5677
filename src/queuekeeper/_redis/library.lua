#!lua name=QK_LIBRARY
--[[
The server side of queuekeeper's Redis queue. Every function takes the
keys of one queue, which share the hash tag {name} (one slot on Redis Cluster):

  KEYS[1] queue     sorted set: id -> priority * 2^40 + seq (lowest first)
  KEYS[2] items     hash: id -> payload
  KEYS[3] meta      hash: seq (the last sequence number), max (the size limit),
                    peak (the most requests queued at once), done (how many
                    taken requests were finished), and the count of queued
                    requests per priority, under "p<priority>"
  KEYS[4] inflight  sorted set: id -> lease deadline, in ms of the server's clock
  KEYS[5] holds     hash: id -> "<score>:<deliveries>:<token>" of a taken request
  KEYS[6] bell      stream rung when a request is queued first (the queue was
                    empty, or it is at a lower priority value than all queued)
  KEYS[7] room      stream rung when the queue goes from full to not full (full:
                    at the max_size of the last put that gave one, kept in meta)
  KEYS[8] born      hash: id -> when it was first queued, in ms of the server's clock
  KEYS[9] alive     hash: tag -> "<until> <workers> <process>" of each pool serving
                    the queue: alive until <until> (ms of the server's clock) unless
                    its heartbeat comes again
  KEYS[10] shares   hash, coalescing (see share): k:<key> -> the id of the request
                    that takes sharers under <key>; c:<id> -> the key of request
                    <id>; j:<id> -> the ids waiting for request <id>'s outcome,
                    space-separated (only once one joined it: its own id first,
                    unless its submitter left); w:<id> -> the request a joined
                    id waits for
  KEYS[11] buckets  hash, rate limits (see pop_policy): t<level> -> the level's
                    token bucket as the time its next token is due (us of the
                    server's clock, GCRA); b<level> -> the sequence number of the
                    newest request queued at that level when a take found no token
                    for it; n<level> -> how many requests taken had so waited; s ->
                    present while the last take with rate limits left a level
                    waiting for a token (then every put rings bell: see enqueue)
  KEYS[12] fair     hash, weighted sharing (see pop_policy): v -> the virtual time,
                    <level> -> the level's pass
  KEYS[13] delayed  sorted set: id -> when (ms of the server's clock) a request
                    whose run failed is queued again (see retry); its hold keeps
                    its score and deliveries, without a token
  KEYS[14] dead     list of the requests that failed for good, newest first, at
                    most the cap of the last bury (see bury)

A pool's requests have ids "<tag>:<n>", where <tag> names the pool process that
submitted it and its reply stream, qk:{name}:reply:<tag> (in the queue's slot). The
library writes to it what the submitter must learn: the request has been running
for a while ("r", sent by its pool's heartbeat; a quick request goes without), it
finished ("d"), it was shed ("s"), its run failed and it waits to run again ("a"); and, to the stream of the pool holding a request,
that its submitter cancelled it ("x"). A reply stream that nobody reads (its
process died) expires an hour after its last message.

Whoever finds nothing to take (or no room) is told the last ring of the stream it
would wait on, in the same atomic step, and waits for a ring after that one
(XREAD BLOCK): a ring between its call and its wait is never missed.

QK_LIBRARY and QK_ stand for the library's name and its functions' prefix, which
name this very text by a digest of it: a changed library loads beside the old one,
so processes of two releases can share a server.

Scores are exact integers: priorities are 0..255 and sequence numbers below 2^40, so
a score stays below 2^48, well inside a double's 2^53. They are formatted with
string.format('%.0f'), never tostring (which prints 2.8147497671066e+14).
]]

local SEQ_SPAN = 1099511627776 -- 2^40

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function exact(n)
  return string.format('%.0f', n)
end
-- (Every number passed to redis.call goes through exact(): Redis would print a Lua
-- number with %.17g, 1.7e+12 for a deadline.)

local function last_ring(stream)
  local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if #last == 0 then
    return '0-0'
  end
  return last[1][1]
end

local function ring(stream)
  redis.call('XADD', stream, 'MAXLEN', '~', '64', '*', 'ring', '1')
end

-- After queued requests left (taken, removed, evicted): ring room if that ended
-- the queue being full.
local function left(keys, before)
  local max_size = tonumber(redis.call('HGET', keys[3], 'max') or '-1')
  if max_size >= 0 and before >= max_size and redis.call('ZCARD', keys[1]) < max_size then
    ring(keys[7])
  end
end

local function level_count(meta, priority, delta)
  redis.call('HINCRBY', meta, 'p' .. priority, delta)
end

-- Queue id at score; ring bell if it is now first (a pool whose workers are all
-- reserved for urgent requests waits for that: see take), or if a taker may be
-- waiting for a token while requests of other levels could start (see take).
local function enqueue(keys, id, score)
  local size = redis.call('ZCARD', keys[1])
  redis.call('ZADD', keys[1], exact(score), id)
  if size + 1 > tonumber(redis.call('HGET', keys[3], 'peak') or '0') then
    redis.call('HSET', keys[3], 'peak', size + 1)
  end
  level_count(keys[3], math.floor(score / SEQ_SPAN), 1)
  if size == 0 or redis.call('ZRANK', keys[1], id) == 0
    or redis.call('HEXISTS', keys[11], 's') == 1 then
    ring(keys[6])
  end
end

-- The ids waiting for request id's outcome, from the shares hash; nil if none
-- joined it.
local function waiters(keys, id)
  local list = redis.call('HGET', keys[10], 'j:' .. id)
  if not list then
    return nil
  end
  local out = {}
  for each in string.gmatch(list, '%S+') do
    out[#out + 1] = each
  end
  return out
end

-- Take no more sharers under the key of request id (if it has one).
local function close_key(keys, id, key)
  if redis.call('HGET', keys[10], 'k:' .. key) == id then
    redis.call('HDEL', keys[10], 'k:' .. key)
  end
end

-- Request id is done with: end what coalescing knows of it, and return the ids
-- to tell of its outcome (its own, or all that wait for it).
local function unshare(keys, id)
  local key = redis.call('HGET', keys[10], 'c:' .. id)
  if not key then
    return {id}
  end
  redis.call('HDEL', keys[10], 'c:' .. id)
  close_key(keys, id, key)
  local list = waiters(keys, id)
  if not list then
    return {id}
  end
  redis.call('HDEL', keys[10], 'j:' .. id)
  for _, each in ipairs(list) do
    if each ~= id then
      redis.call('HDEL', keys[10], 'w:' .. each)
    end
  end
  return list
end

-- Request id is done with; returns the ids to tell of its outcome (see unshare).
local function forget(keys, id)
  redis.call('HDEL', keys[2], id)
  redis.call('HDEL', keys[5], id)
  redis.call('HDEL', keys[8], id)
  return unshare(keys, id)
end

local REPLY_TTL_MS = 3600000

-- Tell the pool process named by tag (a request's, or a lease token) something.
local function tell(keys, tag, ...)
  if not tag or tag == '' then
    return
  end
  local stream = string.sub(keys[1], 1, -6) .. 'reply:' .. tag
  redis.call('XADD', stream, '*', ...)
  redis.call('PEXPIRE', stream, REPLY_TTL_MS)
end

local function submitter(id)
  return string.match(id, '^(%w+):')
end

-- Requeue requests whose lease ran out, at their original place; at most limit.
local function reap(keys, now, limit)
  local expired = redis.call('ZRANGE', keys[4], '-inf', exact(now), 'BYSCORE', 'LIMIT', 0, limit)
  for _, id in ipairs(expired) do
    local hold = redis.call('HGET', keys[5], id)
    redis.call('ZREM', keys[4], id)
    if hold then
      local score, deliveries = string.match(hold, '^(%d+):(%d+):')
      redis.call('HSET', keys[5], id, score .. ':' .. deliveries .. ':')
      enqueue(keys, id, tonumber(score))
    end
  end
  return #expired
end

-- Queue the requests whose retry is due (see retry) at their level, behind the
-- requests queued there; at most limit.
local function due(keys, now, limit)
  local ready = redis.call('ZRANGE', keys[13], '-inf', exact(now), 'BYSCORE', 'LIMIT', 0, limit)
  for _, id in ipairs(ready) do
    redis.call('ZREM', keys[13], id)
    local hold = redis.call('HGET', keys[5], id)
    if hold then
      local score, rest = string.match(hold, '^(%d+)(:.*)$')
      local level = math.floor(tonumber(score) / SEQ_SPAN)
      local new = level * SEQ_SPAN + redis.call('HINCRBY', keys[3], 'seq', 1)
      redis.call('HSET', keys[5], id, exact(new) .. rest)
      enqueue(keys, id, new)
    end
  end
end

-- Remove the newest request of the lowest level if that level is greater than
-- above; its {id, payload, priority, ids waiting for it}, or nil.
local function evict_below(keys, above)
  local last = redis.call('ZRANGE', keys[1], -1, -1, 'WITHSCORES')
  if #last == 0 then
    return nil
  end
  local id, priority = last[1], math.floor(tonumber(last[2]) / SEQ_SPAN)
  if priority <= above then
    return nil
  end
  local payload = redis.call('HGET', keys[2], id)
  redis.call('ZREM', keys[1], id)
  level_count(keys[3], priority, -1)
  return {id, payload, priority, forget(keys, id)}
end

-- put(max_size, shed, id, priority, payload, id, priority, payload, ...) -> one
-- status per request, in order: its sequence number (> 0) if queued, 0 if the queue
-- was full, -1 if its id is in use; then, if one was refused for room, the last ring
-- of room. A request refused for room refuses the ones after it too, so that a batch
-- never jumps its own queue. With shed = 1, a request that finds the queue full
-- evicts the newest request of the lowest level below its own, whose submitter is
-- told ("s"), and takes its place.
local function put(keys, args)
  local max_size, shed, out, full = tonumber(args[1]), args[2] == '1', {}, false
  local size = redis.call('ZCARD', keys[1])
  local now = now_ms()
  if max_size >= 0 then
    redis.call('HSET', keys[3], 'max', args[1])
  else
    redis.call('HDEL', keys[3], 'max')
  end
  for i = 3, #args, 3 do
    local id, priority, payload = args[i], tonumber(args[i + 1]), args[i + 2]
    if not full and shed and max_size >= 0 and size >= max_size then
      local victim = evict_below(keys, priority)
      if victim then
        size = size - 1
        for _, waiter in ipairs(victim[4]) do
          tell(keys, submitter(waiter), 'k', 's', 'i', waiter, 'p', priority)
        end
      end
    end
    if full or (max_size >= 0 and size >= max_size) then
      full = true
      out[#out + 1] = 0
    elseif redis.call('HEXISTS', keys[2], id) == 1 then
      out[#out + 1] = -1
    else
      local seq = redis.call('HINCRBY', keys[3], 'seq', 1)
      local score = priority * SEQ_SPAN + seq
      redis.call('HSET', keys[2], id, payload)
      redis.call('HSET', keys[5], id, exact(score) .. ':0:')
      redis.call('HSET', keys[8], id, exact(now))
      enqueue(keys, id, score)
      size = size + 1
      out[#out + 1] = seq
    end
  end
  if full then
    out[#out + 1] = last_ring(keys[7])
  end
  return out
end

-- The queued levels, ascending (from the per-level counts in meta).
local function queued_levels(keys)
  local levels, meta = {}, redis.call('HGETALL', keys[3])
  for i = 1, #meta, 2 do
    local level = string.match(meta[i], '^p(%d+)$')
    if level and tonumber(meta[i + 1]) > 0 then
      levels[#levels + 1] = tonumber(level)
    end
  end
  table.sort(levels)
  return levels
end

-- The level a request queued at level, first queued at born (ms), competes at
-- now with aging_ms per level: one better per aging_ms waited, never past 1 (a
-- level of 1 or below never changes).
local function aged(level, born, now, aging_ms)
  if level <= 1 then
    return level
  end
  local better = math.floor((now - born) / aging_ms)
  return math.max(1, level - better)
end

-- The entry at rank r of the queue: its id, score, and first-queued time.
local function entry_at(keys, r, now)
  local got = redis.call('ZRANGE', keys[1], r, r, 'WITHSCORES')
  local born = tonumber(redis.call('HGET', keys[8], got[1]) or exact(now))
  return got[1], tonumber(got[2]), born
end

-- With aging: up to count requests, each the best by (aged level, sequence) of
-- the heads of the queued levels, popped as ZPOPMIN would ({id, score, ...}).
-- With most, only those whose aged level is most or better (a lower or equal
-- value).
local function pop_aged(keys, count, now, aging_ms, most)
  local popped = {}
  local levels = queued_levels(keys)
  local left_in = {}
  for _, level in ipairs(levels) do
    left_in[level] = tonumber(redis.call('HGET', keys[3], 'p' .. level))
  end
  for _ = 1, count do
    local best_id, best_score, best_key, best_seq
    for _, level in ipairs(levels) do
      if left_in[level] > 0 then
        local head = redis.call('ZRANGE', keys[1], exact(level * SEQ_SPAN),
          exact((level + 1) * SEQ_SPAN - 1), 'BYSCORE', 'LIMIT', 0, 1, 'WITHSCORES')
        local id, score = head[1], tonumber(head[2])
        local born = tonumber(redis.call('HGET', keys[8], id) or exact(now))
        local key, seq = aged(level, born, now, aging_ms), score - level * SEQ_SPAN
        if (not most or key <= most)
          and (not best_key or key < best_key or (key == best_key and seq < best_seq)) then
          best_id, best_score, best_key, best_seq = id, score, key, seq
        end
      end
    end
    if not best_id then
      break
    end
    redis.call('ZREM', keys[1], best_id)
    local level = math.floor(best_score / SEQ_SPAN)
    left_in[level] = left_in[level] - 1
    popped[#popped + 1] = best_id
    popped[#popped + 1] = exact(best_score)
  end
  return popped
end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- take's rate limits: "<level> <interval_us> <burst> ..." -> {level = {interval,
-- burst}}
local function parse_limits(spec)
  local limits = {}
  for level, interval, burst in string.gmatch(spec, '(%d+) (%S+) (%d+)') do
    limits[tonumber(level)] = {tonumber(interval), tonumber(burst)}
  end
  return limits
end

-- take's weights: "<default> <level> <weight> ..." -> weight(level), or nil for ''
local function parse_weights(spec)
  if spec == nil or spec == '' then
    return nil
  end
  local words = {}
  for word in string.gmatch(spec, '%S+') do
    words[#words + 1] = tonumber(word)
  end
  local weights = {}
  for i = 2, #words, 2 do
    weights[words[i]] = words[i + 1]
  end
  return function(level)
    return weights[level] or words[1]
  end
end

-- The sequence number of the newest request queued at level (0 if none).
local function newest_seq(keys, level)
  local tail = redis.call('ZRANGE', keys[1], exact((level + 1) * SEQ_SPAN - 1),
    exact(level * SEQ_SPAN), 'BYSCORE', 'REV', 'LIMIT', 0, 1, 'WITHSCORES')
  if #tail == 0 then
    return 0
  end
  return tonumber(tail[2]) - level * SEQ_SPAN
end

-- With rate limits (limits, see parse_limits) and/or weighted sharing (weight,
-- see parse_weights): up to count requests, popped as ZPOPMIN would ({id,
-- score, ...}), and the us until a token comes for a level skipped for want of
-- one (nil if none was).
--
-- Rate limits: a token bucket per level, kept as the time its next token is
-- due, t (GCRA): a request of the level may start at now if t - now <= (burst
-- - 1) * interval, and each start moves t to max(t, now) + interval, so that
-- in any span of w us at most w / interval + burst start, whoever takes them.
-- A level without a token is skipped: the others are taken as if it had
-- nothing queued.
--
-- Weighted sharing (stride scheduling): each level has a pass; the level taken
-- is the one with the lowest pass (the better level on a tie) among those with
-- a request to take, and its pass then grows by 1 / its weight. A pass is
-- first raised to the virtual time (the pass of the last level taken), so a
-- level that was idle comes back with no credit saved up: while several levels
-- have requests queued, their shares of the requests taken converge to their
-- weights' shares, and a level with none queued takes no share. Within a level,
-- requests are taken in order. Otherwise the best level is taken (or, with
-- aging_ms > 0, the best by aged level and sequence, as pop_aged does). With
-- most, only requests at most or above (by aged level with aging).
local function pop_policy(keys, count, now, aging_ms, most, limits, weight)
  local us = now_us()
  local popped, levels, left_in, due, waited = {}, queued_levels(keys), {}, {}, {}
  local passes, starved, wait = {}, {}, nil
  local vt = weight and tonumber(redis.call('HGET', keys[12], 'v') or '0')
  for _, level in ipairs(levels) do
    left_in[level] = tonumber(redis.call('HGET', keys[3], 'p' .. level))
    if limits[level] then
      due[level] = tonumber(redis.call('HGET', keys[11], 't' .. level) or '0')
      waited[level] = tonumber(redis.call('HGET', keys[11], 'b' .. level) or '0')
    end
    if weight then
      passes[level] = tonumber(redis.call('HGET', keys[12], tostring(level)) or '0')
    end
  end
  for _ = 1, count do
    local best, best_id, best_score, best_key, best_seq, best_order
    for _, level in ipairs(levels) do
      if left_in[level] > 0 then
        local head = redis.call('ZRANGE', keys[1], exact(level * SEQ_SPAN),
          exact((level + 1) * SEQ_SPAN - 1), 'BYSCORE', 'LIMIT', 0, 1, 'WITHSCORES')
        local id, score = head[1], tonumber(head[2])
        local seq, key = score - level * SEQ_SPAN, level
        if aging_ms > 0 then
          local born = tonumber(redis.call('HGET', keys[8], id) or exact(now))
          key = aged(level, born, now, aging_ms)
        end
        if not most or key <= most then
          local limit, token = limits[level], 0
          if limit then
            token = math.max(due[level], us) - (limit[2] - 1) * limit[1] - us
          end
          if token > 0 then
            starved[level] = true
            if not wait or token < wait then
              wait = token
            end
          else
            local order = seq
            if weight then
              key, order = math.max(passes[level], vt), level
            end
            if not best or key < best_key or (key == best_key and order < best_order) then
              best, best_id, best_score, best_key, best_seq = level, id, score, key, seq
              best_order = order
            end
          end
        end
      end
    end
    if not best then
      break
    end
    redis.call('ZREM', keys[1], best_id)
    left_in[best] = left_in[best] - 1
    local limit = limits[best]
    if limit then
      due[best] = math.max(due[best], us) + limit[1]
      if best_seq <= waited[best] then
        redis.call('HINCRBY', keys[11], 'n' .. best, 1)
      end
    end
    if weight then
      vt = best_key
      passes[best] = best_key + 1 / weight(best)
    end
    popped[#popped + 1] = best_id
    popped[#popped + 1] = exact(best_score)
  end
  for level, limit in pairs(limits) do
    if due[level] then
      redis.call('HSET', keys[11], 't' .. level, string.format('%.3f', due[level]))
    end
    if starved[level] then
      -- Those queued now waited for a token: counted as they are taken.
      redis.call('HSET', keys[11], 'b' .. level, exact(newest_seq(keys, level)))
    end
  end
  if next(starved) then
    redis.call('HSET', keys[11], 's', '1')
  else
    redis.call('HDEL', keys[11], 's')
  end
  if weight and #popped > 0 then
    redis.call('HSET', keys[12], 'v', string.format('%.17g', vt))
    for level, pass in pairs(passes) do
      redis.call('HSET', keys[12], tostring(level), string.format('%.17g', pass))
    end
  end
  return popped, wait
end

-- take(count, lease_ms, token[, aging_ms[, most[, limits[, weights]]]]) -> {'',
-- id, payload, score, deliveries, age_ms, ...}, or {last ring of bell} if nothing
-- is queued (at priority most or above, if given: a lower or equal value); age_ms
-- is how long ago it was first queued. A lease of 0 takes them for good (at most
-- once): no lease, nothing to acknowledge. With aging_ms > 0, requests age (see
-- aged()), and most compares with the level a request has aged to. most may be
-- '' (none). With limits (rate limits, see parse_limits: '' for none) or weights
-- (see parse_weights), pop_policy takes them; if it took none while a level
-- waited for a token, the reply is {last ring of bell, ms until a token comes}.
local function take(keys, args)
  local count, lease_ms, token = tonumber(args[1]), tonumber(args[2]), args[3]
  local aging_ms = tonumber(args[4] or '0')
  local most = args[5] and tonumber(args[5])
  local now = now_ms()
  due(keys, now, 100)
  reap(keys, now, 100)
  local before = redis.call('ZCARD', keys[1])
  local popped, wait
  if args[6] then
    popped, wait = pop_policy(keys, count, now, aging_ms, most, parse_limits(args[6]),
      parse_weights(args[7]))
  elseif aging_ms > 0 and before > 0 then
    popped = pop_aged(keys, count, now, aging_ms, most)
  elseif most then
    local upto = exact((most + 1) * SEQ_SPAN - 1)
    popped = redis.call('ZRANGE', keys[1], '-inf', upto, 'BYSCORE', 'LIMIT', 0, count,
      'WITHSCORES')
    for i = 1, #popped, 2 do
      redis.call('ZREM', keys[1], popped[i])
    end
  else
    popped = redis.call('ZPOPMIN', keys[1], count)
  end
  if #popped == 0 then
    if wait then
      return {last_ring(keys[6]), exact(math.ceil(wait / 1000))}
    end
    return {last_ring(keys[6])}
  end
  local out = {''}
  for i = 1, #popped, 2 do
    local id, score = popped[i], tonumber(popped[i + 1])
    local priority = math.floor(score / SEQ_SPAN)
    level_count(keys[3], priority, -1)
    local hold = redis.call('HGET', keys[5], id)
    local deliveries = tonumber(string.match(hold, '^%d+:(%d+):')) + 1
    local payload = redis.call('HGET', keys[2], id)
    local born = tonumber(redis.call('HGET', keys[8], id) or exact(now))
    if lease_ms > 0 then
      redis.call('HSET', keys[5], id, exact(score) .. ':' .. deliveries .. ':' .. token)
      redis.call('ZADD', keys[4], exact(now + lease_ms), id)
    else
      forget(keys, id) -- at most once: done with as it is taken
    end
    out[#out + 1] = id
    out[#out + 1] = payload
    out[#out + 1] = exact(score)
    out[#out + 1] = deliveries
    out[#out + 1] = exact(now - born)
  end
  left(keys, before)
  return out
end

local function held_by(keys, id, token)
  local hold = redis.call('HGET', keys[5], id)
  return hold and string.sub(hold, -#token - 1) == ':' .. token
    and redis.call('ZSCORE', keys[4], id) ~= false
end

-- ack(token, id...) -> how many were still held under token (a stale ack counts 0)
local function ack(keys, args)
  local token, done = args[1], 0
  for i = 2, #args do
    local id = args[i]
    if held_by(keys, id, token) then
      redis.call('ZREM', keys[4], id)
      forget(keys, id)
      done = done + 1
    end
  end
  redis.call('HINCRBY', keys[3], 'done', done)
  return done
end

-- finish(token, id, deliveries, ran_ms, reply, ...) -> how many were still held
-- under token: those are done with, and their submitter (and every id that
-- waits for it: see share) is sent the reply ("d");
-- a stale one (its lease ran out, and it went to another worker) changes nothing.
local function finish(keys, args)
  local token, done = args[1], 0
  for i = 2, #args, 4 do
    local id = args[i]
    if held_by(keys, id, token) then
      redis.call('ZREM', keys[4], id)
      for _, waiter in ipairs(forget(keys, id)) do
        tell(keys, submitter(waiter), 'k', 'd', 'i', waiter, 'n', args[i + 1],
          't', args[i + 2], 'v', args[i + 3])
      end
      done = done + 1
    end
  end
  redis.call('HINCRBY', keys[3], 'done', done)
  return done
end

-- started(token, id, deliveries, ran_ms, ...) -> how many were still held under
-- token: their submitters are told they are running ("r")
local function started(keys, args)
  local token, told = args[1], 0
  for i = 2, #args, 3 do
    local id = args[i]
    if held_by(keys, id, token) then
      for _, waiter in ipairs(waiters(keys, id) or {id}) do
        tell(keys, submitter(waiter), 'k', 'r', 'i', waiter, 'n', args[i + 1],
          't', args[i + 2])
      end
      told = told + 1
    end
  end
  return told
end

-- renew(lease_ms, token, id...) -> how many leases were renewed
local function renew(keys, args)
  local deadline, token, renewed = now_ms() + tonumber(args[1]), args[2], 0
  for i = 3, #args do
    if held_by(keys, args[i], token) then
      redis.call('ZADD', keys[4], 'XX', exact(deadline), args[i])
      renewed = renewed + 1
    end
  end
  return renewed
end

-- release(token, id) -> 1 if put back at its original place, 0 if no longer held
local function release(keys, args)
  local token, id = args[1], args[2]
  if not held_by(keys, id, token) then
    return 0
  end
  redis.call('ZREM', keys[4], id)
  local score, deliveries = string.match(redis.call('HGET', keys[5], id), '^(%d+):(%d+):')
  redis.call('HSET', keys[5], id, score .. ':' .. deliveries .. ':')
  enqueue(keys, id, tonumber(score))
  return 1
end

-- restore(id, score, payload, deliveries) -> 1 if a request taken for good (a lease
-- of 0) is queued again at its place (score), 0 if its id is in use
local function restore(keys, args)
  local id, score, payload, deliveries = args[1], tonumber(args[2]), args[3], args[4]
  if redis.call('HEXISTS', keys[2], id) == 1 then
    return 0
  end
  redis.call('HSET', keys[2], id, payload)
  redis.call('HSET', keys[5], id, exact(score) .. ':' .. deliveries .. ':')
  enqueue(keys, id, score)
  return 1
end

-- remove(id) -> 1 if it was queued, or waited to be retried (and is now gone),
-- else 0
local function remove(keys, args)
  local id = args[1]
  local score = redis.call('ZSCORE', keys[1], id)
  if not score then
    if redis.call('ZREM', keys[13], id) == 0 then
      return 0
    end
    forget(keys, id)
    return 1
  end
  local before = redis.call('ZCARD', keys[1])
  redis.call('ZREM', keys[1], id)
  level_count(keys[3], math.floor(tonumber(score) / SEQ_SPAN), -1)
  forget(keys, id)
  left(keys, before)
  return 1
end

-- cancel(id) -> 1 if it was queued or waited to be retried (it is gone), 2 if it is taken (its holder, if a
-- pool, is told: "x"), 0 if neither (it is done with, or unknown). While other
-- ids wait for the same request (see share), id only stops waiting: 1. The last
-- one to leave cancels the request, and is told its outcome.
local function cancel(keys, args)
  local id = args[1]
  local work = redis.call('HGET', keys[10], 'w:' .. id) or id
  local list = waiters(keys, work)
  if list then
    local rest, found = {}, false
    for _, each in ipairs(list) do
      if each == id then
        found = true
      else
        rest[#rest + 1] = each
      end
    end
    if not found then
      return 0
    end
    if #rest > 0 then
      redis.call('HSET', keys[10], 'j:' .. work, table.concat(rest, ' '))
      redis.call('HDEL', keys[10], 'w:' .. id)
      return 1
    end
    redis.call('HSET', keys[10], 'j:' .. work, id) -- the last one waiting
  elseif work ~= id then
    return 0
  end
  -- No later submit joins what is being cancelled.
  local key = redis.call('HGET', keys[10], 'c:' .. work)
  if key then
    close_key(keys, work, key)
  end
  if remove(keys, {work}) == 1 then
    return 1
  end
  if redis.call('ZSCORE', keys[4], work) then
    local token = string.match(redis.call('HGET', keys[5], work) or '', '^%d+:%d+:(.*)$')
    tell(keys, token, 'k', 'x', 'i', work)
    return 2
  end
  return 0
end

-- evict(above) -> {id, payload, priority} of the newest request of the lowest level,
-- removed, if that level's value is greater than above; else {}
local function evict(keys, args)
  local before = redis.call('ZCARD', keys[1])
  local victim = evict_below(keys, tonumber(args[1]))
  if not victim then
    return {}
  end
  left(keys, before)
  return victim
end

-- sizes() -> {queued, in flight, peak queued, priority, count, priority, count, ...}
local function sizes(keys, args)
  local peak = tonumber(redis.call('HGET', keys[3], 'peak') or '0')
  local out = {redis.call('ZCARD', keys[1]), redis.call('ZCARD', keys[4]), peak}
  local meta = redis.call('HGETALL', keys[3])
  for i = 1, #meta, 2 do
    local level, count = string.match(meta[i], '^p(%d+)$'), tonumber(meta[i + 1])
    if level and count > 0 then
      out[#out + 1] = tonumber(level)
      out[#out + 1] = count
    end
  end
  return out
end

-- limited(limits) -> {level, waited, waiting, ...} for each rate-limited level
-- (see parse_limits): how many requests taken had waited for a token, and how
-- many queued now wait for one (those beyond the tokens its bucket holds).
local function limited(keys, args)
  local us, out = now_us(), {}
  for level, limit in pairs(parse_limits(args[1])) do
    local due = tonumber(redis.call('HGET', keys[11], 't' .. level) or '0')
    local tokens = math.floor((limit[2] * limit[1] - (math.max(due, us) - us)) / limit[1])
    local queued = tonumber(redis.call('HGET', keys[3], 'p' .. level) or '0')
    out[#out + 1] = level
    out[#out + 1] = tonumber(redis.call('HGET', keys[11], 'n' .. level) or '0')
    out[#out + 1] = math.max(0, queued - math.max(0, tokens))
  end
  return out
end

-- beat(tag, alive_ms, workers, process) -> {sizes(), {process, workers, ...},
-- {waiting to be retried, dead letters kept}}
-- The heartbeat of the pool <tag>: it is alive for alive_ms more (0: it left),
-- with <workers> workers in <process>. Pools past their time are forgotten.
local function beat(keys, args)
  local tag, alive, now = args[1], tonumber(args[2]), now_ms()
  if alive > 0 then
    redis.call('HSET', keys[9], tag, exact(now + alive) .. ' ' .. args[3] .. ' ' .. args[4])
  else
    redis.call('HDEL', keys[9], tag)
  end
  local live, pools = {}, redis.call('HGETALL', keys[9])
  for i = 1, #pools, 2 do
    local till, workers, process = string.match(pools[i + 1], '^(%d+) (%d+) (.*)$')
    if tonumber(till) < now then
      redis.call('HDEL', keys[9], pools[i])
    else
      live[#live + 1] = process
      live[#live + 1] = tonumber(workers)
    end
  end
  return {sizes(keys, args), live,
    {redis.call('ZCARD', keys[13]), redis.call('LLEN', keys[14])}}
end

-- position(id, aging_ms) -> {position or -1 if not queued, done, now_ms}: how many
-- queued requests are taken before it (or before the request it waits for: see
-- share; with aging_ms > 0, by aged level and
-- sequence, as take does: in each other level those ahead are a prefix, found
-- by binary search), how many taken requests were finished, and the server's
-- clock (for a rate).
local function position(keys, args)
  local id, aging_ms, now = args[1], tonumber(args[2]), now_ms()
  local done = tonumber(redis.call('HGET', keys[3], 'done') or '0')
  local score = redis.call('ZSCORE', keys[1], id)
  if not score then
    id = redis.call('HGET', keys[10], 'w:' .. id) -- waits for another's outcome
    score = id and redis.call('ZSCORE', keys[1], id)
  end
  if not score then
    return {-1, done, now}
  end
  score = tonumber(score)
  if aging_ms <= 0 then
    return {redis.call('ZRANK', keys[1], id), done, now}
  end
  local level = math.floor(score / SEQ_SPAN)
  local seq = score - level * SEQ_SPAN
  local born = tonumber(redis.call('HGET', keys[8], id) or exact(now))
  local key = aged(level, born, now, aging_ms)
  local count = redis.call('ZCOUNT', keys[1], exact(level * SEQ_SPAN), '(' .. exact(score))
  for _, other in ipairs(queued_levels(keys)) do
    if other ~= level then
      local low = exact(other * SEQ_SPAN)
      local first = redis.call('ZCOUNT', keys[1], '-inf', '(' .. low)
      local size = redis.call('ZCOUNT', keys[1], low, exact((other + 1) * SEQ_SPAN - 1))
      local lo, hi = 0, size -- the first index not ahead lies in [lo, hi]
      while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        local _, s, b = entry_at(keys, first + mid, now)
        local k, q = aged(other, b, now, aging_ms), s - other * SEQ_SPAN
        if k < key or (k == key and q < seq) then
          lo = mid + 1
        else
          hi = mid
        end
      end
      count = count + lo
    end
  end
  return {count, done, now}
end

-- Move request id up to priority (to the end of that level) if that is better
-- than its level: in the queue if queued (1), else, if it is taken, where its
-- lease puts it back should it run out or be released (0).
local function raise_to(keys, id, priority)
  local hold = redis.call('HGET', keys[5], id)
  if not hold then
    return 0
  end
  local score = tonumber(string.match(hold, '^(%d+):'))
  local level = math.floor(score / SEQ_SPAN)
  if priority >= level then
    return 0
  end
  local new = priority * SEQ_SPAN + redis.call('HINCRBY', keys[3], 'seq', 1)
  redis.call('HSET', keys[5], id, exact(new) .. string.match(hold, '^%d+(:.*)$'))
  if not redis.call('ZSCORE', keys[1], id) then
    return 0
  end
  redis.call('ZREM', keys[1], id)
  level_count(keys[3], level, -1)
  enqueue(keys, id, new)
  return 1
end

-- share(max_size, shed, id, priority, payload, key, ...) -> one status per
-- request, as put's (and the last ring of room after them if one found no room),
-- where a request with a key ('' for none) may instead join a request queued
-- under an equal key that is still queued (-2) or taken (-3): it is not queued
-- but waits for that request's outcome (finish, started and shed tell its id
-- too; see cancel), and that request moves up to its priority if that is
-- better. The first request of a key is queued as put queues it, and takes
-- sharers until it is done with. A join takes no room, so it is never refused.
local function share(keys, args)
  local out, full, room = {}, false, nil
  for i = 3, #args, 4 do
    local id, priority, key = args[i], tonumber(args[i + 1]), args[i + 3]
    local work = key ~= '' and redis.call('HGET', keys[10], 'k:' .. key)
    if work and redis.call('HEXISTS', keys[2], work) == 1 then
      local list = redis.call('HGET', keys[10], 'j:' .. work) or work
      redis.call('HSET', keys[10], 'j:' .. work, list .. ' ' .. id, 'w:' .. id, work)
      raise_to(keys, work, priority)
      out[#out + 1] = redis.call('ZSCORE', keys[4], work) and -3 or -2
    elseif full then
      out[#out + 1] = 0
    else
      local one = put(keys, {args[1], args[2], id, args[i + 1], args[i + 2]})
      out[#out + 1] = one[1]
      if one[1] == 0 then
        full, room = true, one[2]
      elseif one[1] > 0 and key ~= '' then
        redis.call('HSET', keys[10], 'k:' .. key, id, 'c:' .. id, key)
      end
    end
  end
  if full then
    out[#out + 1] = room
  end
  return out
end

-- promote(id, priority) -> 1 if the queued request id (or the one it waits for)
-- moved up to priority, the end of that level; 0 if not better, or not queued
-- (a taken one goes back at that level if it goes back: see raise_to)
local function promote(keys, args)
  local work = redis.call('HGET', keys[10], 'w:' .. args[1]) or args[1]
  return raise_to(keys, work, tonumber(args[2]))
end

-- retry(token, id, delay_ms, ...) -> how many were still held under token: each
-- leaves its lease and waits delay_ms in the delayed set (take queues it again,
-- at its level, once due), keeping its deliveries; its submitters are told
-- ("a"). Its queue timeout is dropped from its payload (it limits the first
-- wait only: "[timeout, queue timeout]\n" heads a payload, see _envelope).
local function retry(keys, args)
  local token, now, done = args[1], now_ms(), 0
  for i = 2, #args, 2 do
    local id = args[i]
    if held_by(keys, id, token) then
      redis.call('ZREM', keys[4], id)
      local score, deliveries = string.match(redis.call('HGET', keys[5], id), '^(%d+):(%d+):')
      redis.call('HSET', keys[5], id, score .. ':' .. deliveries .. ':')
      redis.call('ZADD', keys[13], exact(now + tonumber(args[i + 1])), id)
      local payload = redis.call('HGET', keys[2], id)
      local timeout, body = string.match(payload, '^%[([^,]*),[^\n]*(\n.*)$')
      if timeout then
        redis.call('HSET', keys[2], id, '[' .. timeout .. ', null]' .. body)
      end
      redis.call('HINCRBY', keys[3], 'retried', 1)
      for _, waiter in ipairs(waiters(keys, id) or {id}) do
        tell(keys, submitter(waiter), 'k', 'a', 'i', waiter, 'n', deliveries)
      end
      done = done + 1
    end
  end
  return done
end

-- bury(token, cap, id, deliveries, ran_ms, reply, record) -> {1, records the cap
-- dropped} if id was still held under token: finished as finish does, and put
-- at the head of the dead list as "<record>\n<first queued> <now>\n<payload>"
-- (ms of the server's clock), which keeps at most cap records (the oldest go,
-- counted in meta's dead_dropped); {0, 0} if no longer held.
local function bury(keys, args)
  local token, cap, id = args[1], tonumber(args[2]), args[3]
  local payload = redis.call('HGET', keys[2], id)
  local born = redis.call('HGET', keys[8], id)
  if finish(keys, {token, id, args[4], args[5], args[6]}) == 0 then
    return {0, 0}
  end
  local now = now_ms()
  local size = redis.call('LPUSH', keys[14], args[7] .. '\n' .. (born or exact(now)) .. ' '
    .. exact(now) .. '\n' .. payload)
  local dropped = math.max(0, size - cap)
  if dropped > 0 then
    redis.call('LTRIM', keys[14], 0, cap - 1)
    redis.call('HINCRBY', keys[3], 'dead_dropped', dropped)
  end
  redis.call('HINCRBY', keys[3], 'dead', 1)
  return {1, dropped}
end

-- dead(count, take) -> {made, dropped, record, ...}: the dead letters made and
-- dropped so far, and up to count records, oldest first; with take = 1 they
-- are removed from the list.
local function dead(keys, args)
  local count, out = tonumber(args[1]), {}
  out[1] = tonumber(redis.call('HGET', keys[3], 'dead') or '0')
  out[2] = tonumber(redis.call('HGET', keys[3], 'dead_dropped') or '0')
  if count > 0 then
    local records
    if args[2] == '1' then
      records = redis.call('RPOP', keys[14], count) or {}
    else
      records = redis.call('LRANGE', keys[14], -count, -1)
      local reversed = {}
      for i = #records, 1, -1 do
        reversed[#reversed + 1] = records[i]
      end
      records = reversed
    end
    for _, record in ipairs(records) do
      out[#out + 1] = record
    end
  end
  return out
end

redis.register_function('QK_put', put)
redis.register_function('QK_share', share)
redis.register_function('QK_promote', promote)
redis.register_function('QK_take', take)
redis.register_function('QK_ack', ack)
redis.register_function('QK_renew', renew)
redis.register_function('QK_release', release)
redis.register_function('QK_restore', restore)
redis.register_function('QK_remove', remove)
redis.register_function('QK_evict', evict)
redis.register_function('QK_finish', finish)
redis.register_function('QK_started', started)
redis.register_function('QK_cancel', cancel)
redis.register_function('QK_beat', beat)
redis.register_function('QK_retry', retry)
redis.register_function('QK_bury', bury)
redis.register_function('QK_dead', dead)
redis.register_function{function_name = 'QK_position', callback = position, flags = {'no-writes'}}
redis.register_function{function_name = 'QK_sizes', callback = sizes, flags = {'no-writes'}}
redis.register_function{function_name = 'QK_limited', callback = limited, flags = {'no-writes'}}
