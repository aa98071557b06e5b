import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import type { Client } from "@xmpp/client";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";
import { login, stopAll } from "../support/clients.js";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { STREAM_OPEN } from "../support/raw.js";
import { heapAfterGc } from "../fuzz/target.js";

const PASSWORD = "abuse pw";
const rejected = async (lb: TestBalancer, reason: string): Promise<number> =>
  Number(new RegExp(`reason="${reason}"} (\\d+)`).exec(await lb.balancer.metrics.registry.getSingleMetricAsString("xmpp_lb_rejected_total"))?.[1] ?? 0);

interface Attacker {
  socket: net.Socket;
  received: string;
  closedAt: number | undefined;
}

function connect(port: number, localAddress = "127.0.0.1"): Promise<Attacker> {
  return new Promise((resolve, reject) => {
    const a: Attacker = { socket: net.connect({ port, host: "127.0.0.1", localAddress }), received: "", closedAt: undefined };
    a.socket.on("data", (d: Buffer) => void (a.received += d.toString()));
    a.socket.on("error", () => {});
    a.socket.once("close", () => (a.closedAt = performance.now()));
    a.socket.once("connect", () => resolve(a)).once("error", reject);
  });
}

/** Attacks as a public address meets them, against a balancer with a real Prosody node behind it. */
describe("abuse", () => {
  let cluster: ProsodyCluster;
  const balancers: TestBalancer[] = [];
  const clients: Client[] = [];
  const attackers: Attacker[] = [];
  const balancer = async (input: Parameters<typeof startBalancer>[0]): Promise<TestBalancer> => {
    // PLAIN only: the login timed below is the balancer's work, not @xmpp/client's own PBKDF2 for SCRAM.
    const lb = await startBalancer({ mode: "forward", node: nodeFlags(cluster.nodes), saslMechanisms: ["PLAIN"], healthInterval: 60, ...input });
    balancers.push(lb);
    return lb;
  };
  const timedLogin = async (lb: TestBalancer): Promise<number> => {
    const started = performance.now();
    clients.push(await login({ port: lb.port, username: "user", password: PASSWORD }));
    return performance.now() - started;
  };

  before(async () => {
    cluster = await startProsodyCluster({ count: 1, externalPort: 0, users: [["user", PASSWORD]] });
  });
  after(async () => {
    for (const a of attackers) a.socket.destroy();
    await stopAll(clients);
    await Promise.all(balancers.map((b) => b.close()));
    await cluster?.stop();
  });

  it("slowloris: 5,000 connections dripping a byte every 2 s do not keep a real client out, and all go at the login timeout", async (t) => {
    const lb = await balancer({ loginTimeout: 6 });
    const wave: Attacker[] = [];
    for (let i = 0; i < 5000; i += 250) wave.push(...(await Promise.all(Array.from({ length: 250 }, () => connect(lb.port)))));
    attackers.push(...wave);
    const opened = performance.now();
    let at = 0;
    const drip = (): void => {
      for (const a of wave) if (a.closedAt === undefined) a.socket.write(STREAM_OPEN[at % STREAM_OPEN.length]!);
      at++;
    };
    drip();
    const dripper = setInterval(drip, 2000);
    try {
      const loginMs = await timedLogin(lb);
      t.diagnostic(`a real login amid the wave took ${Math.round(loginMs)} ms`);
      assert.ok(loginMs < 1000, `the login took ${Math.round(loginMs)} ms`);
      assert.equal(wave.filter((a) => a.closedAt !== undefined).length, 0, "the wave was admitted (default limits)");
      const deadline = opened + 6000 + 4000;
      while (wave.some((a) => a.closedAt === undefined) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    } finally {
      clearInterval(dripper);
    }
    assert.equal(wave.filter((a) => a.closedAt === undefined).length, 0, "every dripping connection is closed by the login timeout");
    assert.equal(wave.filter((a) => a.received.includes("<connection-timeout ")).length, 5000);
  });

  it("limits a flood from one address while another address logs in normally", async () => {
    const lb = await balancer({ maxConnectionsPerAddress: 20, maxConnectionRatePerAddress: 10 });
    const flood: Attacker[] = [];
    const flooding = (async () => {
      for (let i = 0; i < 10; i++) flood.push(...(await Promise.all(Array.from({ length: 100 }, () => connect(lb.port, "127.0.0.50")))));
    })();
    const loginMs = await timedLogin(lb);
    await flooding;
    attackers.push(...flood);
    assert.ok(loginMs < 1000, `the login took ${Math.round(loginMs)} ms`);
    await new Promise((r) => setTimeout(r, 500));
    const refused = flood.filter((a) => a.received.includes("<policy-violation ")).length;
    assert.ok(refused >= 1000 - 20, `${refused} of 1,000 refused`);
    assert.ok((await rejected(lb, "address-rate")) + (await rejected(lb, "address-connections")) >= refused);
  });

  it("holds no memory for 100,000 rejected connections", async (t) => {
    // One connection holds the only slot: every other one is refused at once (the balancer's header, <policy-violation/>, close).
    // A login timeout longer than the test, so the slot's holder is never timed out and the slot freed.
    const lb = await balancer({ maxConnections: 1, loginTimeout: 600 });
    attackers.push(await connect(lb.port));
    const refuse = async (count: number, firstAddress: number): Promise<void> => {
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < count) {
          const i = next++;
          // From 500 addresses, so per-address bookkeeping is exercised too.
          const n = (firstAddress + i) % 500;
          const a = await connect(lb.port, `127.2.${n >> 1}.${1 + (n & 1)}`);
          await new Promise((r) => (a.closedAt !== undefined ? r(null) : a.socket.once("close", r)));
          assert.match(a.received, /<policy-violation /);
        }
      };
      await Promise.all(Array.from({ length: 64 }, worker));
    };
    await refuse(5000, 0); // warm-up
    const before = heapAfterGc();
    await refuse(100_000, 7);
    const growthMb = (heapAfterGc() - before) / 1048576;
    t.diagnostic(`heap after GC: ${(before / 1048576).toFixed(1)} MB before, ${growthMb >= 0 ? "+" : ""}${growthMb.toFixed(2)} MB after 100,000 refusals`);
    assert.ok(growthMb < 4, `heap grew ${growthMb.toFixed(2)} MB`);
    assert.ok((await rejected(lb, "max-connections")) >= 105_000);
  });
});
