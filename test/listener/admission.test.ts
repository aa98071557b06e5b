import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Admission } from "../../src/listener/admission.js";

const none = { maxConnections: 0, maxPerAddress: 0, maxRatePerAddress: 0, maxPreAuth: 0 };

describe("Admission", () => {
  it("limits connections in all, and frees a slot when one closes", () => {
    const a = new Admission({ ...none, maxConnections: 2 });
    assert.equal(a.admit("192.0.2.1"), null);
    assert.equal(a.admit("192.0.2.2"), null);
    assert.equal(a.admit("192.0.2.3"), "max-connections");
    a.closed("192.0.2.1", true);
    assert.equal(a.admit("192.0.2.3"), null);
    a.close();
  });

  it("limits one address without touching another", () => {
    const a = new Admission({ ...none, maxPerAddress: 2 });
    assert.equal(a.admit("192.0.2.1"), null);
    assert.equal(a.admit("192.0.2.1"), null);
    assert.equal(a.admit("192.0.2.1"), "address-connections");
    assert.equal(a.admit("192.0.2.2"), null);
    a.close();
  });

  it("limits new connections per address per second", () => {
    let now = 0;
    const a = new Admission({ ...none, maxRatePerAddress: 3 }, () => now);
    for (let i = 0; i < 3; i++) assert.equal(a.admit("192.0.2.1"), null);
    assert.equal(a.admit("192.0.2.1"), "address-rate");
    assert.equal(a.admit("192.0.2.9"), null, "another address has its own budget");
    now += 1000;
    assert.equal(a.admit("192.0.2.1"), null, "a new second, a new budget");
    a.close();
  });

  it("limits connections still in the pre-auth dialogue, not established sessions", () => {
    const a = new Admission({ ...none, maxPreAuth: 2 });
    assert.equal(a.admit("192.0.2.1"), null);
    assert.equal(a.admit("192.0.2.2"), null);
    assert.equal(a.admit("192.0.2.3"), "preauth-connections");
    a.leftPreAuth(); // one logged in
    assert.equal(a.admit("192.0.2.3"), null);
    assert.equal(a.connections, 3);
    a.close();
  });
});
