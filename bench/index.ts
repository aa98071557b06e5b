/**
 * npm run bench: xmpp-lb side by side with HAProxy, then the routing decision
 * latency, then modern logins (SASL2, Bind2, FAST) direct to Prosody 13 and
 * through the balancer. `--quick`: a short smoke run of the first and the
 * last, which writes nothing; `--only relay,idle,logins,modern`: only those
 * scenarios (`modern`: bench/modern-logins.ts), nothing written.
 */
const onlyAt = process.argv.indexOf("--only");
const only = onlyAt < 0 ? null : (process.argv[onlyAt + 1] ?? "").split(",");
if (only === null || only.some((s) => s !== "modern")) await import("./side-by-side/run.js");
if (!process.argv.includes("--quick") && only === null) await import("./routing.js");
if (only === null || only.includes("modern")) await import("./modern-logins.js");
export {};
