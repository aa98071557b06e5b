// What a modern-login test against real nodes (Prosody or ejabberd) keeps
// between its cases: balancers that have learnt what the nodes offer, the
// sessions it opened, and the set-up that makes a token's memory the only way
// onto a node. Closed together at the end.

import type { ConfigInput } from "../../src/index.js";
import { startBalancer, type TestBalancer } from "./balancer.js";
import { fillNode, type ModernSession } from "./modern-client.js";

export interface ModernFixture {
  /** A balancer over `nodes()` (or `extra.node`), once its first probes taught it what the nodes offer. */
  balancer(extra: ConfigInput, logLines?: string[]): Promise<TestBalancer>;
  /** Keeps a session open until close(). */
  keep(session: ModernSession): ModernSession;
  /**
   * Nodes that take one session each (maxconn=1), and no affinity window: once
   * the token's node is full, only the token's memory can send a login there.
   */
  tokenTest(): ConfigInput;
  /** Fills `node` with other users' sessions (see fillNode), kept until close(). */
  fill(service: string, node: string, users: string[]): Promise<void>;
  close(): Promise<void>;
}

export function modernFixture(nodes: () => readonly string[], password: string): ModernFixture {
  const balancers: TestBalancer[] = [];
  const sessions: ModernSession[] = [];
  const keep = (s: ModernSession): ModernSession => (sessions.push(s), s);
  return {
    async balancer(extra, logLines) {
      const lb = await startBalancer({ node: [...nodes()], ...extra }, logLines);
      balancers.push(lb);
      for (let i = 0; i < 100 && !lb.balancer.saslMechanisms("lb.test").includes("SCRAM-SHA-1"); i++) await new Promise((r) => setTimeout(r, 50));
      // Every domain's probe, not only the first to answer.
      await new Promise((r) => setTimeout(r, 300));
      return lb;
    },
    keep,
    tokenTest: () => ({ node: nodes().map((flag) => `${flag},maxconn=1`), affinityTtl: 0 }),
    async fill(service, node, users) {
      for (const s of await fillNode(service, node, users, password)) keep(s);
    },
    async close() {
      await Promise.all(sessions.map((s) => s.client.stop().catch(() => {})));
      await Promise.all(balancers.map((b) => b.close()));
    },
  };
}
