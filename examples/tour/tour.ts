/**
 * `npm run tour`: two Prosody nodes behind one balancer (prosody.ts).
 * `npm run tour -- --cluster`: a real three-node ejabberd cluster behind two
 * balancer instances sharing one Redis, and a rolling restart of one node
 * under load (cluster.ts). `--keep` leaves either running until Ctrl-C.
 */
if (process.argv.includes("--cluster")) await import("./cluster.js");
else await import("./prosody.js");
