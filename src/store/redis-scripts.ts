import type { Cluster, Redis } from "ioredis";

/**
 * The Lua scripts of the Redis store. Each touches one key, or keys of one
 * hash tag: the loads and node listings also read the per-instance and
 * per-node keys they find in their index, which share the index's tag and so
 * its slot. Times come from Redis (TIME), so balancer clocks may disagree.
 * ioredis runs them with EVALSHA and loads them again after a Redis restart.
 */

const NOW = `local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)`;

/** Never shortens a TTL (another instance's lease), never adds one to a key an operator or plugin made permanent. */
const EXTEND = `local function extend(key, ttl)
  local left = redis.call('PTTL', key)
  if left >= 0 and left < ttl then redis.call('PEXPIRE', key, ttl) end
end`;

const SCRIPTS = {
  // KEYS[1] jid key, KEYS[2] its holders hash (KEYS[1] again when it has none); ARGV[1] node id,
  // ARGV[2] grace ms, ARGV[3..] owners that may be replaced. Returns {owner, 1 if this call wrote the
  // entry else 0}. A new owner drops the 'keep' mark: what could resume on the old node cannot here.
  xmppLbClaim: {
    numberOfKeys: 2,
    lua: `local owner = redis.call('GET', KEYS[1])
if owner then
  local replaceable = false
  for i = 3, #ARGV do
    if ARGV[i] == owner then replaceable = true end
  end
  if owner == ARGV[1] or not replaceable then return {owner, 0} end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if KEYS[2] ~= KEYS[1] then redis.call('HDEL', KEYS[2], 'keep') end
return {ARGV[1], 1}`,
  },
  // KEYS[1] jid key; ARGV[1] node id, ARGV[2] ttl ms. Keeps the entry (whichever node it names) for at
  // least ttl, or writes it for node id when it is gone (Redis restarted, or the lease ran out).
  xmppLbHold: {
    numberOfKeys: 1,
    lua: `${EXTEND}
if not redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then extend(KEYS[1], tonumber(ARGV[2])) end`,
  },
  // KEYS[1] jid key, KEYS[2] its holders hash; ARGV[1] node id, ARGV[2] ttl ms, ARGV[3] this instance's
  // field. A connection of the JID is open here: holds the entry as xmppLbHold does, and notes until when
  // this instance holds it (renewed with the entry).
  xmppLbHoldOpen: {
    numberOfKeys: 2,
    lua: `${NOW}
${EXTEND}
local ttl = tonumber(ARGV[2])
if not redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl, 'NX') then extend(KEYS[1], ttl) end
redis.call('HSET', KEYS[2], ARGV[3], now + ttl)
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end`,
  },
  // KEYS[1] jid key, KEYS[2] its holders hash; ARGV[1] node id, ARGV[2] ttl ms, ARGV[3] this instance's
  // field ('' for none), ARGV[4] 'keep' or 'clean'. This instance's last connection of the JID closed
  // (or, with no field, a redirect). 'keep': a connection that broke may resume within ttl, or a redirected
  // client logs in at the node: the entry and a 'keep' mark live at least ttl. 'clean': the client closed
  // its stream; unless another instance still holds a connection open, the entry (if it names the node
  // and has a TTL) lives only as long as a 'keep' mark asks, and goes at once without one.
  xmppLbLetGo: {
    numberOfKeys: 2,
    lua: `${NOW}
${EXTEND}
local ttl = tonumber(ARGV[2])
if ARGV[3] ~= '' then redis.call('HDEL', KEYS[2], ARGV[3]) end
if ARGV[4] == 'keep' then
  if (tonumber(redis.call('HGET', KEYS[2], 'keep')) or 0) < now + ttl then redis.call('HSET', KEYS[2], 'keep', now + ttl) end
  if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
  if not redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl, 'NX') then extend(KEYS[1], ttl) end
  return
end
local keep = 0
local fields = redis.call('HGETALL', KEYS[2])
for i = 1, #fields, 2 do
  local untilMs = tonumber(fields[i + 1]) or 0
  if fields[i] == 'keep' then keep = untilMs elseif untilMs > now then return end
end
if keep <= now then redis.call('DEL', KEYS[2]) end
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('PTTL', KEYS[1]) < 0 then return end
if keep > now then redis.call('PEXPIRE', KEYS[1], keep - now) else redis.call('DEL', KEYS[1]) end`,
  },
  // KEYS[1] jid key; ARGV[1] node id. Deletes the entry if it still names the node.
  xmppLbRelease: {
    numberOfKeys: 1,
    lua: `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end`,
  },
  // KEYS[1] this instance's connections hash, KEYS[2] its redirects hash, KEYS[3] the instances index;
  // ARGV[1] ttl ms, ARGV[2] instance id, ARGV[3] prefix of instance connections keys, ARGV[4] prefix of
  // instance redirects keys, ARGV[5] the number n of connection pairs, then n node id, count pairs of
  // connections and the redirects' pairs after them.
  // Publishes this instance's counts, forgets instances that stopped publishing, and returns the
  // other live instances' sums as node id, connections, redirects triples.
  xmppLbSyncLoads: {
    numberOfKeys: 3,
    lua: `${NOW}
${EXTEND}
local ttl = tonumber(ARGV[1])
local split = 5 + 2 * tonumber(ARGV[5])
local function publish(key, first, last)
  redis.call('DEL', key)
  if last > first then
    redis.call('HSET', key, unpack(ARGV, first, last))
    redis.call('PEXPIRE', key, ttl)
  end
end
publish(KEYS[1], 6, split)
publish(KEYS[2], split + 1, #ARGV)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
redis.call('ZADD', KEYS[3], now + ttl, ARGV[2])
extend(KEYS[3], ttl)
local sums, order = {}, {}
local function add(key, slot)
  local counts = redis.call('HGETALL', key)
  for i = 1, #counts, 2 do
    local node = counts[i]
    if sums[node] == nil then
      sums[node] = {0, 0}
      order[#order + 1] = node
    end
    sums[node][slot] = sums[node][slot] + (tonumber(counts[i + 1]) or 0)
  end
end
for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  if id ~= ARGV[2] then
    add(ARGV[3] .. id, 1)
    add(ARGV[4] .. id, 2)
  end
end
local out = {}
for _, node in ipairs(order) do
  out[#out + 1] = node
  out[#out + 1] = sums[node][1]
  out[#out + 1] = sums[node][2]
end
return out`,
  },
  // KEYS[1] node hash, KEYS[2] node index; ARGV[1] ttl ms, ARGV[2] channel, ARGV[3] node id,
  // ARGV[4..] field, value pairs (all but lastHeartbeat). A heartbeat: refreshes lastHeartbeat and the
  // TTL; rewrites the record and announces it only when it was absent or differs. Returns 1 if announced.
  xmppLbRegisterNode: {
    numberOfKeys: 2,
    lua: `${NOW}
local changed = redis.call('HLEN', KEYS[1]) ~= (#ARGV - 3) / 2 + 1
if not changed then
  for i = 4, #ARGV, 2 do
    if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then
      changed = true
      break
    end
  end
end
if changed then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(ARGV, 4))
end
redis.call('HSET', KEYS[1], 'lastHeartbeat', now)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if redis.call('SADD', KEYS[2], ARGV[3]) == 1 then changed = true end
if changed then redis.call('PUBLISH', ARGV[2], 'register ' .. ARGV[3]) end
return changed and 1 or 0`,
  },
  // KEYS[1] node hash, KEYS[2] node index, KEYS[3] drained set; ARGV[1] channel, ARGV[2] node id,
  // ARGV[3] 'deregister', or 'remove' to forget the drain flag too. Returns 1 if anything was removed.
  xmppLbDeregisterNode: {
    numberOfKeys: 3,
    lua: `local removed = redis.call('DEL', KEYS[1]) + redis.call('SREM', KEYS[2], ARGV[2])
if ARGV[3] == 'remove' then removed = removed + redis.call('SREM', KEYS[3], ARGV[2]) end
if removed == 0 then return 0 end
redis.call('PUBLISH', ARGV[1], ARGV[3] .. ' ' .. ARGV[2])
return 1`,
  },
  // KEYS[1] drained set; ARGV[1] channel, ARGV[2] node id, ARGV[3] 'drain' or 'undrain'. Returns 1 if it changed.
  xmppLbSetDrain: {
    numberOfKeys: 1,
    lua: `local changed
if ARGV[3] == 'drain' then changed = redis.call('SADD', KEYS[1], ARGV[2]) else changed = redis.call('SREM', KEYS[1], ARGV[2]) end
if changed == 1 then redis.call('PUBLISH', ARGV[1], ARGV[3] .. ' ' .. ARGV[2]) end
return changed`,
  },
  // KEYS[1] node index, KEYS[2] drained set; ARGV[1] prefix of node keys, ARGV[2] channel.
  // Returns {{id, {field, value, ...}}, ...} and the drained ids; forgets (and announces) the
  // indexed nodes whose heartbeat ran out.
  xmppLbListNodes: {
    numberOfKeys: 2,
    lua: `local nodes, expired = {}, {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local fields = redis.call('HGETALL', ARGV[1] .. id)
  if #fields == 0 then expired[#expired + 1] = id else nodes[#nodes + 1] = {id, fields} end
end
if #expired > 0 then
  redis.call('SREM', KEYS[1], unpack(expired))
  redis.call('PUBLISH', ARGV[2], 'expire ' .. table.concat(expired, ' '))
end
return {nodes, redis.call('SMEMBERS', KEYS[2])}`,
  },
} as const;

type Arg = string | number;

/** The scripts as methods of the client (ioredis defineCommand). */
export interface StoreScripts {
  xmppLbClaim(jidKey: string, holdersKey: string, nodeId: string, graceMs: number, ...replaceable: string[]): Promise<[string, number]>;
  xmppLbHold(jidKey: string, nodeId: string, ttlMs: number): Promise<null>;
  xmppLbHoldOpen(jidKey: string, holdersKey: string, nodeId: string, ttlMs: number, holder: string): Promise<null>;
  xmppLbLetGo(jidKey: string, holdersKey: string, nodeId: string, ttlMs: number, holder: string, how: "keep" | "clean"): Promise<null>;
  xmppLbRelease(jidKey: string, nodeId: string): Promise<null>;
  xmppLbSyncLoads(
    ownConnections: string,
    ownRedirects: string,
    instances: string,
    ttlMs: number,
    instanceId: string,
    connectionsPrefix: string,
    redirectsPrefix: string,
    connectionPairs: number,
    ...counts: Arg[]
  ): Promise<Arg[]>;
  xmppLbRegisterNode(nodeKey: string, nodeIndex: string, ttlMs: number, channel: string, nodeId: string, ...fields: string[]): Promise<number>;
  xmppLbDeregisterNode(nodeKey: string, nodeIndex: string, drained: string, channel: string, nodeId: string, event: "deregister" | "remove"): Promise<number>;
  xmppLbSetDrain(drained: string, channel: string, nodeId: string, event: "drain" | "undrain"): Promise<number>;
  xmppLbListNodes(nodeIndex: string, drained: string, nodePrefix: string, channel: string): Promise<[Array<[string, string[]]>, string[]]>;
}

export type ScriptedClient = (Redis | Cluster) & StoreScripts;

export function defineScripts(client: Redis | Cluster): ScriptedClient {
  for (const [name, script] of Object.entries(SCRIPTS)) client.defineCommand(name, script);
  return client as ScriptedClient;
}
