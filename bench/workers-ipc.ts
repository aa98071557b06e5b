/**
 * What `--workers` costs a routing decision: the same Router over the
 * embedded store, in this process and in a worker that reaches the primary's
 * store over cluster IPC (one message and its answer per store call).
 * Run: node --import tsx bench/workers-ipc.ts   (prints a table)
 */
import cluster from "node:cluster";
import os from "node:os";
import { performance } from "node:perf_hooks";
import { NodeTable, type NodeSpec } from "../src/cluster/node.js";
import { NodeTableHolder } from "../src/cluster/node-table-holder.js";
import { createLogger } from "../src/log.js";
import { Metrics } from "../src/metrics.js";
import { Router } from "../src/router/router.js";
import { leastConnStrategy } from "../src/router/strategies.js";
import { MemoryStore } from "../src/store/memory-store.js";
import type { ClusterStore } from "../src/store/store.js";
import { IpcStore } from "../src/workers/ipc-store.js";
import { serveStore } from "../src/workers/store-server.js";

const USERS = 20_000;
const specs: NodeSpec[] = [1, 2, 3].map((i) => ({ id: `n${i}`, weight: 1, domains: [], internal: { host: "10.0.0.1", port: 5222 }, external: { host: "x", port: 5222 } }));

async function measure(store: ClusterStore): Promise<string[]> {
  const router = new Router(store, leastConnStrategy, new NodeTableHolder(NodeTable.fromSpecs(specs)), { metrics: new Metrics(), storeTimeoutMs: 250 });
  const log = createLogger("silent");
  for (let i = 0; i < 1000; i++) await router.route({ jid: `warmup${i}@x`, domain: "x" }, log);
  const rows: string[] = [];
  for (const login of ["new user", "returning user"]) {
    const times = new Float64Array(USERS);
    for (let i = 0; i < USERS; i++) {
      const t0 = performance.now();
      await router.route({ jid: `u${i}@x`, domain: "x" }, log);
      times[i] = performance.now() - t0;
    }
    times.sort();
    const us = (p: number): string => (times[Math.floor(p * USERS)]! * 1000).toFixed(1);
    rows.push(`${login} | ${us(0.5)} | ${us(0.99)}`);
  }
  return rows;
}

if (cluster.isPrimary) {
  const local = await measure(new MemoryStore(specs, { affinityTtlMs: 300_000 }));
  const store = new MemoryStore(specs, { affinityTtlMs: 300_000 });
  const worker = cluster.fork();
  serveStore(store, worker);
  const remote = await new Promise<string[]>((resolve) => worker.on("message", (m: { rows?: string[] }) => m.rows && resolve(m.rows)));
  worker.kill();
  console.log(`Routing decision, least-conn, 3 nodes, ${USERS} users per row (${os.cpus()[0]?.model}, ${os.cpus().length} cores, Node ${process.version})\n`);
  console.log("| store | login | p50 (us) | p99 (us) |\n|---|---|---|---|");
  for (const row of local) console.log(`| memory, in process | ${row} |`);
  for (const row of remote) console.log(`| memory, from a worker over IPC | ${row} |`);
  process.exit(0);
} else {
  process.send!({ rows: await measure(new IpcStore("memory")) });
}
