/**
 * npm run bench: xmpp-lb side by side with HAProxy, then the routing decision
 * latency. `--quick`: a short smoke run of the first, which writes nothing.
 */
await import("./side-by-side/run.js");
if (!process.argv.includes("--quick")) await import("./routing.js");
export {};
