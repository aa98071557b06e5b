import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError } from "../../src/errors.js";
import { TrafficMeter, parseTrafficLimit } from "../../src/upstream/traffic-limit.js";

describe("--traffic-limit", () => {
  it("reads Tigase's bin:PER_MINUTE:LIFETIME:ACTION form and a short one", () => {
    assert.deepEqual(parseTrafficLimit("bin:25m:0:disc"), { perMinute: 25 * 1024 ** 2, lifetime: 0, action: "disconnect", text: "bin:25m:0:disc" });
    assert.deepEqual(parseTrafficLimit("64k"), { perMinute: 65536, lifetime: 0, action: "disconnect", text: "64k" });
    assert.deepEqual(parseTrafficLimit("0:1g:throttle"), { perMinute: 0, lifetime: 1024 ** 3, action: "throttle", text: "0:1g:throttle" });
  });

  it("refuses what it cannot do or what limits nothing, saying why", () => {
    assert.throws(() => parseTrafficLimit("xmpp:25k:0:disc"), (e: unknown) => e instanceof ConfigError && /stanza/.test(e.message));
    assert.throws(() => parseTrafficLimit("bin:0:0:disc"), /limits nothing/);
    assert.throws(() => parseTrafficLimit("bin:1m:0:drop"), /disc or throttle/);
    assert.throws(() => parseTrafficLimit("1mb"), /not a byte count/);
  });

  it("lets a minute's allowance through at once, then disconnects or names the pause that keeps the rate", () => {
    const disc = new TrafficMeter(parseTrafficLimit("60000:0:disc"));
    assert.equal(disc.take(60_000), 0);
    assert.equal(disc.take(1000), -1);
    const throttle = new TrafficMeter(parseTrafficLimit("60000:0:throttle"));
    assert.equal(throttle.take(60_000), 0);
    // 1,000 bytes a second: 2,000 bytes over is about two seconds of pause.
    const pause = throttle.take(2000);
    assert.ok(pause > 1900 && pause <= 2000, `pause ${pause} ms`);
  });

  it("closes a connection past its lifetime allowance, whatever the action", () => {
    const meter = new TrafficMeter(parseTrafficLimit("0:10k:throttle"));
    assert.equal(meter.take(10 * 1024), 0);
    assert.equal(meter.take(1), -1);
  });
});
