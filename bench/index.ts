/**
 * npm run bench: xmpp-lb side by side with HAProxy, then the routing decision
 * latency. `--quick`: a short smoke run of the first, which writes nothing;
 * `--only relay,idle,logins`: only those side-by-side scenarios, nothing written.
 */
await import("./side-by-side/run.js");
if (!process.argv.includes("--quick") && !process.argv.includes("--only")) await import("./routing.js");
export {};
