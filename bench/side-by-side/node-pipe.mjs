/**
 * Node's floor for the relay and idle rows: the plainest relay Node offers,
 * `pipe()` both ways, with no XMPP, no limits and no bookkeeping; a plaintext
 * listener and one terminating TLS (tls.createServer), both to one backend.
 * Plain JavaScript, so no loader sits in the process that is measured.
 * Run: node bench/side-by-side/node-pipe.mjs HOST:PORT CERT KEY  (prints "PLAIN TLS" ports)
 */
import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";

const [backend, cert, key] = process.argv.slice(2);
const [host, port] = [backend.slice(0, backend.lastIndexOf(":")), Number(backend.slice(backend.lastIndexOf(":") + 1))];

function relay(client) {
  const node = net.connect({ host, port, noDelay: true });
  client.pipe(node).pipe(client);
  client.on("error", () => node.destroy());
  node.on("error", () => client.destroy());
}

const plain = net.createServer({ noDelay: true }, relay);
const secure = tls.createServer({ cert: readFileSync(cert), key: readFileSync(key), ALPNProtocols: ["xmpp-client"], noDelay: true }, relay);
plain.listen(0, "127.0.0.1", () =>
  secure.listen(0, "127.0.0.1", () => console.log(`${plain.address().port} ${secure.address().port}`)),
);
