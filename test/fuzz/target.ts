import v8 from "node:v8";
import vm from "node:vm";
import { createBalancer, resolveConfig, type Balancer } from "../../src/index.js";
import { createLogger } from "../../src/log.js";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";
import { PASSWORD, USER } from "./corpus.js";
import type { Target } from "./harness.js";

const TLS_DIR = new URL("../../examples/tls/", import.meta.url).pathname;

export interface FuzzTarget {
  target: Target;
  balancer: Balancer;
  /** Log lines at warn level and above, parsed. */
  warnings: Array<{ level: number; msg: string }>;
  stop(): Promise<void>;
}

/**
 * A balancer in this process (so a throw out of its code is seen as the
 * crash it would be) with a STARTTLS, a direct-TLS and a PROXY listener,
 * forwarding to one real Prosody node that knows the corpus's account.
 */
export async function startFuzzTarget(loginTimeoutMs: number): Promise<FuzzTarget> {
  const cluster: ProsodyCluster = await startProsodyCluster({ count: 1, externalPort: 0, users: [[USER, PASSWORD]] });
  const warnings: FuzzTarget["warnings"] = [];
  const logger = createLogger("warn", {
    write: (line: string) => {
      const { level, msg } = JSON.parse(line) as { level: number; msg: string };
      warnings.push({ level, msg });
    },
  });
  const config = resolveConfig({
    listen: ["127.0.0.1:0", "direct-tls://127.0.0.1:0", "127.0.0.1:0,proxy"],
    domain: "lb.test",
    tlsCert: `${TLS_DIR}server.pem`,
    tlsKey: `${TLS_DIR}server.key`,
    node: nodeFlags(cluster.nodes),
    loginTimeout: loginTimeoutMs / 1000,
    healthInterval: 60,
  });
  const balancer = await createBalancer(config, { logger });
  const [starttls, direct, proxy] = balancer.listeners.map((l) => l.address.port);
  return {
    target: { host: "127.0.0.1", starttlsPort: starttls!, directTlsPort: direct!, proxyPort: proxy!, loginTimeoutMs },
    balancer,
    warnings,
    stop: async () => {
      await balancer.close();
      await cluster.stop();
    },
  };
}

/** Heap in use after a full collection (gc exposed at run time, so no flag is needed). */
export function heapAfterGc(): number {
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}
