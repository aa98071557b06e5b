import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { runFuzz } from "../fuzz/harness.js";
import { heapAfterGc, startFuzzTarget, type FuzzTarget } from "../fuzz/target.js";

/**
 * A short, fixed-seed run of the fuzzer (`npm run fuzz` runs long ones):
 * every mutated opening or login is answered and closed, at once or at the
 * login timeout, nothing is logged at error level and the heap stays flat.
 */
describe("fuzzed openings and logins", () => {
  let fuzz: FuzzTarget;
  let crash: unknown;
  const onCrash = (err: unknown): void => void (crash = err);

  before(async () => {
    process.on("uncaughtException", onCrash);
    fuzz = await startFuzzTarget(1500);
  });
  after(async () => {
    process.off("uncaughtException", onCrash);
    await fuzz?.stop();
  });

  it("ends every connection with a stream error or a close, logs no error and holds no memory", async () => {
    await runFuzz({ seed: 7, count: 300, concurrency: 48, target: fuzz.target }); // warm-up
    const before = heapAfterGc();
    const report = await runFuzz({ seed: 20261124, count: 2500, concurrency: 48, target: fuzz.target });
    const growthMb = (heapAfterGc() - before) / 1048576;
    const replay = report.failures.map((f) => `${f.kind} case ${f.index} (${f.stage}): npm run fuzz -- --seed 20261124 --case ${f.index}`);
    assert.deepEqual(replay, []);
    assert.equal(crash, undefined);
    assert.deepEqual(fuzz.warnings.filter((w) => w.level >= 50), []);
    assert.ok(growthMb < 8, `heap grew ${growthMb.toFixed(1)} MB`);
    // The run reached every stage and most answers were at once, not at the timeout.
    assert.ok(report.byKind["stream-error"] > report.count / 2);
    assert.ok(report.byKind.forwarded > 0, "some logins got through to the node");
    assert.ok(report.waited < report.count / 2);
  });
});
