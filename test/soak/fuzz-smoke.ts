/**
 * A smoke run of hostile input (the real fuzzer comes with the hardening work):
 * N connections each send a randomly mutated XMPP opening or login, in small
 * pieces, to a running balancer. Every connection must be closed by the
 * balancer (stream error or login timeout) and the process must stay up.
 * Run: node --import tsx test/soak/fuzz-smoke.ts [connections=3000] [seed=42]
 */
import net from "node:net";
import { startBalancer } from "../support/balancer.js";
import { STREAM_OPEN, plainAuth } from "../support/raw.js";

const total = Number(process.argv[2] ?? 3000);
let seed = Number(process.argv[3] ?? 42);
const random = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;

const corpus = [
  STREAM_OPEN,
  STREAM_OPEN + plainAuth("a", "b"),
  STREAM_OPEN + "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
  STREAM_OPEN + "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>biwsbj1hLHI9eA==</auth>",
  STREAM_OPEN + "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'/><response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>AGEAYg==</response>",
  "<?xml version='1.0'?>",
];

function mutate(text: string): Buffer {
  const bytes = Buffer.from(text);
  for (let i = 0, n = 1 + Math.floor(random() * 8); i < n; i++) {
    const at = Math.floor(random() * bytes.length);
    const op = random();
    bytes[at] = op < 0.5 ? Math.floor(random() * 256) : op < 0.75 ? "<>&'\"=/:!?".charCodeAt(Math.floor(random() * 10)) : 0x3e;
  }
  return random() < 0.3 ? Buffer.concat([bytes, bytes.subarray(0, Math.floor(random() * bytes.length))]) : bytes;
}

const lb = await startBalancer({ node: ["id=n1,internal=127.0.0.1:1"], loginTimeout: 1, allowPlaintext: true, healthInterval: 60 });
let closed = 0;
for (let sent = 0; sent < total; sent += 50) {
  await Promise.all(
    Array.from({ length: Math.min(50, total - sent) }, () => {
      const data = mutate(corpus[Math.floor(random() * corpus.length)]!);
      return new Promise<void>((resolve) => {
        const socket = net.connect(lb.port, "127.0.0.1", () => {
          for (let i = 0; i < data.length; i += 17) socket.write(data.subarray(i, i + 17));
        });
        socket.on("error", () => {});
        socket.on("close", () => (closed++, resolve()));
        socket.resume();
      });
    }),
  );
}
const errors = await lb.balancer.metrics.registry.getSingleMetricAsString("xmpp_lb_stream_errors_total");
console.log(`${closed} of ${total} connections closed by the balancer; rss ${Math.round(process.memoryUsage().rss / 1e6)} MB`);
console.log(errors.split("\n").filter((l) => !l.startsWith("#")).join("\n"));
await lb.close();
process.exitCode = closed === total ? 0 : 1;
