import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RedirectMemory } from "../../src/session/redirect-memory.js";

describe("RedirectMemory", () => {
  it("recognizes the same address and JID within the window, and only those", () => {
    let now = 0;
    const memory = new RedirectMemory(30_000, () => now);
    assert.equal(memory.cameBack("192.0.2.1", "a@lb.test"), false);
    memory.remember("192.0.2.1", "a@lb.test");
    now += 10_000;
    assert.equal(memory.cameBack("192.0.2.1", "a@lb.test"), true);
    assert.equal(memory.cameBack("192.0.2.2", "a@lb.test"), false, "another address");
    assert.equal(memory.cameBack("192.0.2.1", "b@lb.test"), false, "another JID");
    now += 30_000;
    assert.equal(memory.cameBack("192.0.2.1", "a@lb.test"), false, "after the window it is a new redirect");
    memory.close();
  });
  it("is off with a window of 0", () => {
    const memory = new RedirectMemory(0);
    memory.remember("192.0.2.1", "a@lb.test");
    assert.equal(memory.cameBack("192.0.2.1", "a@lb.test"), false);
    memory.close();
  });
});
