/**
 * What an idle forwarded session holds on the balancer's heap, by kind of
 * object: heap snapshots of the balancer (dist/) with 200 and then 2,200 idle
 * sessions through it to an echo node; the difference, divided by 2,000, is
 * one session's share. The side-by-side idle rows give RSS; this says what is
 * in it.
 *
 * Run: npm run build && node --import tsx bench/idle-heap.ts [--tls] [--baseline OTHER/dist/src/cli.js]
 */
import { mkdtemp, open, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { BUILT_CLI, startBalancer, startEchoNode } from "./side-by-side/contenders.js";
import { openMany } from "./side-by-side/loadgen.js";

const tls = process.argv.includes("--tls");
const baselineAt = process.argv.indexOf("--baseline");
const cli = baselineAt < 0 ? BUILT_CLI : process.argv[baselineAt + 1]!;
const FIRST = 200;
const MORE = 2000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}

/** Self size and count per kind (V8's node type and constructor name; strings and code folded together). */
async function kinds(file: string): Promise<Map<string, { bytes: number; count: number }>> {
  const heap = JSON.parse(await readFile(file, "utf8")) as HeapSnapshot;
  const fields = heap.snapshot.meta.node_fields;
  const [typeAt, nameAt, sizeAt] = ["type", "name", "self_size"].map((f) => fields.indexOf(f)) as [number, number, number];
  const types = heap.snapshot.meta.node_types[0];
  const out = new Map<string, { bytes: number; count: number }>();
  for (let i = 0; i < heap.nodes.length; i += fields.length) {
    const type = types[heap.nodes[i + typeAt]!]!;
    const name = type.includes("string") ? "(strings)" : type === "code" ? "(compiled code)" : heap.strings[heap.nodes[i + nameAt]!]!.slice(0, 50);
    const key = `${type}: ${name}`;
    const entry = out.get(key) ?? { bytes: 0, count: 0 };
    entry.bytes += heap.nodes[i + sizeAt]!;
    entry.count++;
    out.set(key, entry);
  }
  return out;
}

async function endsWithBrace(file: string): Promise<boolean> {
  const handle = await open(file);
  try {
    const { size } = await handle.stat();
    const last = Buffer.alloc(16);
    const { bytesRead } = await handle.read(last, 0, last.length, Math.max(0, size - last.length));
    return last.subarray(0, bytesRead).toString().trimEnd().endsWith("}");
  } finally {
    await handle.close();
  }
}

const dir = await mkdtemp(path.join(os.tmpdir(), "xmpp-lb-heap-"));
const echo = await startEchoNode();
const lb = await startBalancer(`127.0.0.1:${echo.port}`, "bench.test", { cli, nodeArgs: ["--heapsnapshot-signal=SIGUSR2"], cwd: dir });
const snapshot = async (): Promise<string> => {
  const before = new Set(await readdir(dir));
  process.kill(lb.pid, "SIGUSR2");
  for (;;) {
    await sleep(500);
    const made = (await readdir(dir)).find((f) => !before.has(f) && f.endsWith(".heapsnapshot"));
    // Written in pieces, with pauses: done once it ends with the JSON's closing brace.
    if (made !== undefined && (await endsWithBrace(path.join(dir, made)))) return path.join(dir, made);
  }
};
try {
  const ep = { port: tls ? lb.tlsPort : lb.plainPort, tls, domain: "bench.test" };
  const sockets = await openMany(ep, FIRST);
  await sleep(1000);
  const first = await kinds(await snapshot());
  sockets.push(...(await openMany(ep, MORE)));
  await sleep(1000);
  const second = await kinds(await snapshot());
  for (const s of sockets) s.destroy();
  const rows = [...new Set([...first.keys(), ...second.keys()])].map((key) => {
    const [a, b] = [first.get(key) ?? { bytes: 0, count: 0 }, second.get(key) ?? { bytes: 0, count: 0 }];
    return { key, bytes: (b.bytes - a.bytes) / MORE, count: (b.count - a.count) / MORE };
  });
  rows.sort((x, y) => y.bytes - x.bytes);
  const total = rows.reduce((n, r) => n + r.bytes, 0);
  console.log(`Heap per idle ${tls ? "TLS" : "plaintext"} session (${cli === BUILT_CLI ? "this build" : cli}): ${(total / 1024).toFixed(2)} KB\n`);
  console.log("| bytes | objects | kind |\n|---|---|---|");
  for (const r of rows.filter((r) => Math.abs(r.bytes) >= 32)) console.log(`| ${r.bytes.toFixed(0)} | ${r.count.toFixed(2)} | ${r.key} |`);
} finally {
  await lb.stop();
  await echo.stop();
  await rm(dir, { recursive: true, force: true });
}
