/**
 * Routing decision latency: new users (strategy + claim) and returning users
 * (directory hit), per strategy, over 3 and 30 nodes, on the embedded memory
 * store and on a real redis-server on loopback (started here; skipped with a
 * note when redis-server is not installed).
 * Run: npm run bench   (writes nothing; prints a table)
 */
import { performance } from "node:perf_hooks";
import os from "node:os";
import { NodeTable, type NodeSpec } from "../src/cluster/node.js";
import { NodeTableHolder } from "../src/cluster/node-table-holder.js";
import { createLogger } from "../src/log.js";
import { Metrics } from "../src/metrics.js";
import { Router } from "../src/router/router.js";
import { strategyByName, type StrategyName } from "../src/router/strategies.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { RedisStore } from "../src/store/redis-store.js";
import type { ClusterStore } from "../src/store/store.js";
import { startRedis, type RedisServer } from "../test/support/redis.js";

const USERS = { memory: 50_000, redis: 5_000 };

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

async function measure(kind: "memory" | "redis", strategy: StrategyName, nodeCount: number, redis?: RedisServer): Promise<string[]> {
  const specs: NodeSpec[] = Array.from({ length: nodeCount }, (_, i) => ({
    id: `n${i + 1}`,
    weight: 1,
    domains: [],
    internal: { host: "10.0.0.1", port: 5222 + i },
    external: { host: "xmpp.example", port: 5222 + i },
  }));
  let store: ClusterStore;
  if (kind === "memory") store = new MemoryStore(specs, { affinityTtlMs: 300_000 });
  else {
    await redis!.cli("FLUSHALL");
    store = new RedisStore(redis!.url, { affinityTtlMs: 300_000, staticNodes: specs });
    await store.waitUntilUp(3000);
  }
  const log = createLogger("silent");
  const router = new Router(store, strategyByName(strategy), new NodeTableHolder(NodeTable.fromSpecs(specs)), { metrics: new Metrics(), storeTimeoutMs: 250 });
  const rows: string[] = [];
  // Warm up (JIT, the Redis connection and its scripts) before anything is timed.
  for (let i = 0; i < 1000; i++) await router.route({ jid: `warmup${i}@example.com`, domain: "example.com" }, log);
  for (const login of ["new user", "returning user"]) {
    const times = new Float64Array(USERS[kind]);
    for (let i = 0; i < USERS[kind]; i++) {
      const jid = `user${i}@example.com`;
      const t0 = performance.now();
      const decision = await router.route({ jid, domain: "example.com" }, log);
      times[i] = performance.now() - t0;
      if (login === "new user") await store.connectionOpened(jid, decision!.node.id);
    }
    times.sort();
    rows.push(`| ${kind} | ${strategy} | ${nodeCount} | ${login} | ${(percentile(times, 0.5) * 1000).toFixed(1)} | ${(percentile(times, 0.99) * 1000).toFixed(1)} |`);
  }
  await store.close();
  return rows;
}

const rows: string[] = [];
for (const strategy of ["least-conn", "hash", "random"] as const) for (const nodes of [3, 30]) rows.push(...(await measure("memory", strategy, nodes)));
let redis: RedisServer | undefined;
try {
  redis = await startRedis();
} catch (err) {
  console.log(`redis-server not available, Redis rows skipped: ${(err as Error).message}`);
}
if (redis !== undefined) {
  for (const strategy of ["least-conn", "hash"] as const) for (const nodes of [3, 30]) rows.push(...(await measure("redis", strategy, nodes, redis)));
  await redis.stop();
}
console.log(`Routing decision latency, ${USERS.memory} users per memory row, ${USERS.redis} per Redis row, one at a time (${os.cpus()[0]?.model}, ${os.cpus().length} cores, Node ${process.version})\n`);
console.log("| store | strategy | nodes | login | p50 (us) | p99 (us) |\n|---|---|---|---|---|---|");
console.log(rows.join("\n"));
