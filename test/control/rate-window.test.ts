import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RateWindow } from "../../src/control/rate-window.js";
import { Metrics } from "../../src/metrics.js";

/** A rate window over a real Metrics registry, on a clock the test moves. */
function setup() {
  const clock = { now: 1_000_000 };
  let metrics = new Metrics();
  const window = new RateWindow(() => metrics.registry.getMetricsAsJSON(), { sampleMs: 5000, windowMs: 60_000 }, () => clock.now);
  const forward = (n = 1): void => void metrics.connections.inc({ listener: "l", outcome: "forwarded", transport: "tcp" }, n);
  return {
    clock,
    window,
    forward,
    get metrics() {
      return metrics;
    },
    restart: () => void (metrics = new Metrics()),
    /** `seconds` of sampling every 5 s, `each` run before each sample. */
    async run(seconds: number, each: () => void = () => {}): Promise<void> {
      for (let t = 0; t < seconds; t += 5) {
        clock.now += 5000;
        each();
        await window.sample();
      }
    },
  };
}

describe("RateWindow", () => {
  it("has no rates before its first reading", async () => {
    const { window } = setup();
    assert.deepEqual(await window.rates(), { windowSeconds: 0, perMinute: null, streamErrors: {} });
  });

  it("counts a young balancer's events as they are, not extrapolated to a minute", async () => {
    const { window, clock, forward, metrics } = setup();
    await window.sample();
    forward(3);
    metrics.authFailures.inc({ node: "n1" });
    metrics.streamErrors.inc({ condition: "host-unknown" }, 2);
    clock.now += 20_000;
    const rates = await window.rates();
    assert.equal(rates.windowSeconds, 20);
    assert.deepEqual(rates.perMinute, { logins: 0, forwards: 3, redirects: 0, failed: 0, refused: 0, authFailures: 1 });
    assert.deepEqual(rates.streamErrors, { "host-unknown": 2 });
  });

  it("gives the last minute's events once it has a minute of readings, forgetting older ones", async () => {
    const s = setup();
    await s.window.sample();
    s.forward(500); // long before the last minute
    await s.run(120, () => s.forward(2)); // two every five seconds: 24 a minute
    const rates = await s.window.rates();
    assert.equal(rates.windowSeconds, 60);
    assert.equal(rates.perMinute?.forwards, 24);
  });

  it("reads logins from the routing decisions, and the outcomes and refusals from their counters", async () => {
    const s = setup();
    await s.window.sample();
    s.metrics.routingDuration.observe({ via: "strategy" }, 0.001);
    s.metrics.routingDuration.observe({ via: "directory" }, 0.001);
    s.metrics.connections.inc({ listener: "l", outcome: "redirected", transport: "websocket" });
    s.metrics.connections.inc({ listener: "l", outcome: "failed", transport: "tcp" });
    s.metrics.connections.inc({ listener: "l", outcome: "rejected", transport: "tcp" });
    s.metrics.rejected.inc({ reason: "address-rate" }, 4);
    s.clock.now += 10_000;
    assert.deepEqual((await s.window.rates()).perMinute, { logins: 2, forwards: 0, redirects: 1, failed: 1, refused: 4, authFailures: 0 });
  });

  it("counts a counter that went down (a restarted worker) from zero again", async () => {
    const s = setup();
    s.forward(100);
    await s.window.sample();
    s.forward(10);
    await s.run(5);
    s.restart(); // its 110 are gone
    s.forward(3);
    s.clock.now += 5000;
    assert.equal((await s.window.rates()).perMinute?.forwards, 13);
  });

  it("skips a reading that fails", async () => {
    const clock = { now: 0 };
    let fail = false;
    const metrics = new Metrics();
    const window = new RateWindow(async () => (fail ? Promise.reject(new Error("a worker did not answer")) : metrics.registry.getMetricsAsJSON()), undefined, () => clock.now);
    await window.sample();
    fail = true;
    clock.now += 5000;
    await window.sample();
    fail = false;
    metrics.authFailures.inc({ node: "n1" });
    clock.now += 5000;
    assert.deepEqual({ window: (await window.rates()).windowSeconds, failures: (await window.rates()).perMinute?.authFailures }, { window: 10, failures: 1 });
  });
});
