import { createBalancer, resolveConfig, type Balancer, type ConfigInput } from "../../src/index.js";
import { createLogger } from "../../src/log.js";

const TLS = { tlsCert: new URL("../../examples/tls/server.pem", import.meta.url).pathname, tlsKey: new URL("../../examples/tls/server.key", import.meta.url).pathname };

export interface TestBalancer {
  balancer: Balancer;
  /** Port of the first listener. */
  port: number;
  ports: number[];
  close(): Promise<void>;
}

/**
 * Starts a balancer in this process on loopback port 0, with the development
 * certificate. Logs go to stdout at XMPP_LB_TEST_LOG level (silent by default),
 * or into `logLines`.
 */
export async function startBalancer(input: ConfigInput, logLines?: string[]): Promise<TestBalancer> {
  const config = resolveConfig({ listen: "127.0.0.1:0", domain: "lb.test", healthInterval: 1, ...TLS, ...input });
  // With `logLines`, every log line (down to trace) is kept for the test to read.
  const logger =
    logLines === undefined
      ? createLogger((process.env.XMPP_LB_TEST_LOG as "debug" | undefined) ?? "silent")
      : createLogger("trace", { write: (line: string) => void logLines.push(line) });
  const balancer = await createBalancer(config, { logger });
  const ports = balancer.listeners.map((l) => l.address.port);
  return { balancer, port: ports[0]!, ports, close: () => balancer.close() };
}
