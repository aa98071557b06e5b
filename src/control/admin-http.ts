import http from "node:http";
import type { AddressInfo } from "node:net";
import type { HostPort } from "../cluster/address.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { NodeTableHolder } from "../cluster/node-table-holder.js";
import type { ClusterStore } from "../store/store.js";
import { AdminAccess } from "./admin-access.js";
import { STATUS_PAGE, STATUS_PAGE_HEADERS } from "./status-page.js";
import type { StatusReport } from "./status-view.js";

const DRAIN = /^\/nodes\/([A-Za-z0-9._-]+)\/(drain|undrain)$/;

export interface AdminHttpDeps {
  metrics: Metrics;
  nodes: NodeTableHolder;
  store: ClusterStore;
  /** `--admin-host` names, parsed. */
  hosts: readonly string[];
  /** `--admin-token`: the bearer token every POST must carry. */
  token?: string;
  /** True once the balancer stops accepting: /healthz then answers 503. */
  stopping: () => boolean;
  log: Logger;
  /** What /metrics answers: this process's metrics, or (--workers) every process's, summed. */
  metricsText: () => Promise<string>;
  /** What /status answers, and the status page at / shows. */
  status: () => Promise<StatusReport>;
}

/**
 * The admin HTTP endpoint: the status page at `/` and its JSON, `/status`;
 * `/metrics` (Prometheus), `/healthz` (200 while at
 * least one node takes users and the balancer is not stopping: an ELB/NLB
 * target-group check), `/nodes`, and `POST /nodes/ID/drain|undrain` (through
 * the store, so with Redis every balancer instance sees it). Requests that do
 * not name the endpoint in their Host, and POSTs from a web page or without
 * the token, are refused (AdminAccess). Bind it to loopback or a private address.
 */
export function startAdminHttp(address: HostPort, deps: AdminHttpDeps): Promise<{ server: http.Server; address: HostPort }> {
  const access = new AdminAccess(address.host, deps.hosts, deps.token);
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const reply = (status: number, type: string, body: string): void => {
      res.writeHead(status, { "content-type": type, "cache-control": "no-store" }).end(body);
    };
    const refusal = access.check(req);
    if (refusal !== null) {
      // Whoever sent it is not an operator's tool, or a misconfigured one: info, with what was refused.
      deps.log.info({ reason: refusal.reason, method: req.method, path, host: req.headers.host, origin: req.headers.origin, peer: `${req.socket.remoteAddress}:${req.socket.remotePort}` }, "admin request refused");
      if (refusal.status === 401) res.setHeader("www-authenticate", 'Bearer realm="xmpp-lb admin"');
      return reply(refusal.status, "text/plain", refusal.message);
    }
    const drain = DRAIN.exec(path ?? "");
    if (drain !== null) {
      const [, id = "", action] = drain;
      if (req.method !== "POST") return reply(405, "text/plain", "POST to drain or undrain\n");
      if (deps.nodes.table.get(id) === undefined) return reply(404, "application/json", JSON.stringify({ error: `no node '${id}'` }) + "\n");
      (action === "drain" ? deps.store.drain(id) : deps.store.undrain(id)).then(
        () => reply(200, "application/json", JSON.stringify({ node: id, draining: action === "drain" }) + "\n"),
        (err: Error) => reply(503, "application/json", JSON.stringify({ error: err.message }) + "\n"),
      );
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") return reply(405, "text/plain", "method not allowed\n");
    if (path === "/") {
      res.writeHead(200, STATUS_PAGE_HEADERS).end(STATUS_PAGE);
      return;
    }
    if (path === "/status") {
      deps.status().then(
        (status) => reply(200, "application/json", JSON.stringify(status) + "\n"),
        (err: Error) => reply(500, "text/plain", `${err.message}\n`),
      );
      return;
    }
    if (path === "/metrics") {
      deps.metricsText().then(
        (text) => reply(200, deps.metrics.registry.contentType, text),
        (err: Error) => reply(500, "text/plain", `${err.message}\n`),
      );
      return;
    }
    if (path === "/healthz") {
      const up = deps.nodes.table.nodes.filter((n) => n.state === "up").length;
      // Stopping: the listeners are closed, so a front must send clients elsewhere however many nodes are up.
      const status = deps.stopping() ? "shutting down" : up > 0 ? "ok" : "no node up";
      return reply(status === "ok" ? 200 : 503, "application/json", JSON.stringify({ status, nodesUp: up }) + "\n");
    }
    if (path === "/nodes") {
      deps.store.loads().then(
        (loads) => {
          const nodes = deps.nodes.table.nodes.map((n) => {
            const { connections = 0, redirects = 0 } = loads.get(n.id) ?? {};
            return { ...n, load: connections + redirects, connections, redirects };
          });
          reply(200, "application/json", JSON.stringify({ store: deps.store.kind, nodes }, null, 2) + "\n");
        },
        (err: Error) => reply(500, "text/plain", `${err.message}\n`),
      );
      return;
    }
    reply(404, "text/plain", "not found: try / (the status page), /status, /metrics, /healthz or /nodes\n");
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: address.host, port: address.port }, () => {
      server.off("error", reject);
      const addr = server.address() as AddressInfo;
      resolve({ server, address: { host: addr.address, port: addr.port } });
    });
  });
}
