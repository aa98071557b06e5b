/**
 * The fuzzer: mutated XMPP openings and logins (plaintext, after STARTTLS,
 * direct TLS, behind a PROXY header) through real sockets into a running
 * balancer with a real Prosody node behind it. For every input the balancer
 * must end the connection (stream error or close) within the login timeout,
 * never crash, never log a client's input at error level, and hold its memory
 * flat.
 *
 *   npm run fuzz -- [--count 20000] [--seed N] [--concurrency 64]
 *   npm run fuzz -- --seed N --case I      replays one case and prints it
 */
import { parseArgs } from "node:util";
import { makeCase, runCase, runFuzz } from "./harness.js";
import { heapAfterGc, startFuzzTarget } from "./target.js";

const { values } = parseArgs({
  options: {
    count: { type: "string", default: "20000" },
    seed: { type: "string" },
    concurrency: { type: "string", default: "64" },
    case: { type: "string" },
    "login-timeout": { type: "string", default: "2" },
  },
});
const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
const loginTimeoutMs = Number(values["login-timeout"]) * 1000;
let crash: unknown;
process.on("uncaughtException", (err) => (crash = err));

const fuzz = await startFuzzTarget(loginTimeoutMs);
let failed = false;
try {
  if (values.case !== undefined) {
    const c = makeCase(seed, Number(values.case));
    console.log(`case ${c.index} of seed ${seed}: stage ${c.stage}, ${c.input.length} bytes in ${c.cuts.length} writes`);
    console.log(`input (hex): ${c.input.toString("hex")}`);
    console.log(`input (text): ${JSON.stringify(c.input.toString("latin1").slice(0, 2000))}`);
    const outcome = await runCase(c, fuzz.target);
    console.log(`outcome: ${outcome.kind}${outcome.condition ? ` <${outcome.condition}/>` : ""} after ${Math.round(outcome.elapsedMs)} ms`);
    console.log(`received: ${JSON.stringify(outcome.received.slice(0, 2000))}`);
    failed = outcome.kind === "hang" || outcome.kind === "setup";
  } else {
    const count = Number(values.count);
    console.log(`fuzz: seed ${seed}, ${count} cases, login timeout ${loginTimeoutMs} ms`);
    // Warm up (TLS contexts, parser code paths, pools) before the baseline.
    await runFuzz({ seed: seed ^ 0x5a5a5a5a, count: 500, concurrency: Number(values.concurrency), target: fuzz.target });
    const before = heapAfterGc();
    const started = performance.now();
    const report = await runFuzz({
      seed,
      count,
      concurrency: Number(values.concurrency),
      target: fuzz.target,
      onProgress: (done) => console.log(`  ${done} cases, ${Math.round((performance.now() - started) / 1000)} s`),
    });
    const after = heapAfterGc();
    const growth = (after - before) / 1024 / 1024;
    console.log(`outcomes: ${JSON.stringify(report.byKind)}`);
    console.log(`stream errors: ${JSON.stringify(report.byCondition)}`);
    console.log(`waited for the login timeout (a valid prefix): ${report.waited}`);
    console.log(`heap after GC: ${(before / 1048576).toFixed(1)} MB before, ${(after / 1048576).toFixed(1)} MB after (${growth >= 0 ? "+" : ""}${growth.toFixed(1)} MB)`);
    console.log(`warnings logged: ${fuzz.warnings.filter((w) => w.level === 40).length}; errors logged: ${fuzz.warnings.filter((w) => w.level >= 50).length}`);
    for (const f of report.failures.slice(0, 20)) console.log(`FAIL ${f.kind} case ${f.index} (${f.stage}): replay with npm run fuzz -- --seed ${seed} --case ${f.index}`);
    failed = report.failures.length > 0 || growth > 8 || fuzz.warnings.some((w) => w.level >= 50);
  }
} finally {
  await fuzz.stop();
}
if (crash !== undefined) {
  console.log(`CRASH: ${(crash as Error).stack ?? String(crash)}`);
  failed = true;
}
console.log(failed ? "fuzz: FAILED" : "fuzz: passed");
process.exit(failed ? 1 : 0);
