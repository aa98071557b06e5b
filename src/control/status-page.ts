import { createHash } from "node:crypto";

/*
 * The status page the admin endpoint serves at `/`: one self-contained HTML
 * document (no external assets, nothing to build) that fetches `/status`
 * every two seconds and draws it with DOM calls (textContent only, so a node
 * id or a domain can never become markup). Drain and undrain are the
 * endpoint's own POSTs; the browser sends them with the page's Origin, which
 * the endpoint checks, and with the admin token when one is typed in.
 */

const STYLE = `
:root { --fg: #1d232b; --muted: #5f6b7a; --line: #d9dee5; --bg: #f6f7f9; --card: #fff; --accent: #1f5fae;
  --up: #17803d; --suspect: #b26a00; --down: #c02828; --draining: #5b4bb5; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; gap: 4px 18px; align-items: baseline; padding: 12px 20px; background: #17202b; color: #e8edf3; }
header h1 { margin: 0; font-size: 18px; font-weight: 600; }
header .muted { color: #a9b4c2; }
main { padding: 14px 20px 24px; max-width: 1500px; }
section, .card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; margin-bottom: 14px; overflow-x: auto; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 14px; background: none; border: 0; padding: 0; }
.grid .card { margin: 0; }
.stack { display: flex; flex-direction: column; gap: 14px; min-width: 0; }
@media (min-width: 1000px) { .grid { grid-template-columns: 1fr 1.7fr; } }
h2 { margin: 0 0 8px; font-size: 15px; font-weight: 600; }
h3 { margin: 12px 0 6px; font-size: 13px; font-weight: 600; color: var(--muted); }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { font-size: 12px; font-weight: 600; color: var(--muted); }
.card td { white-space: normal; overflow-wrap: break-word; }
.card td.keep { white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:last-child td { border-bottom: 0; }
.muted { color: var(--muted); font-weight: 400; }
.pill { display: inline-block; min-width: 64px; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px; font-weight: 600; text-align: center; }
.state-up { background: var(--up); } .state-suspect { background: var(--suspect); } .state-down { background: var(--down); } .state-draining { background: var(--draining); }
.state-unknown { background: var(--muted); }
button { font: inherit; font-size: 12px; padding: 2px 10px; border: 1px solid var(--accent); border-radius: 5px; background: #fff; color: var(--accent); cursor: pointer; }
button:hover { background: var(--accent); color: #fff; }
button:disabled { opacity: 0.5; cursor: default; }
.rates { display: grid; grid-template-columns: repeat(3, 1fr); gap: 8px; margin: 0; }
.rates div { border: 1px solid var(--line); border-radius: 6px; padding: 6px 8px; }
.rates dt { font-size: 12px; color: var(--muted); }
.rates dd { margin: 0; font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
.banner { padding: 8px 12px; border-radius: 6px; margin-bottom: 12px; background: #fdecec; border: 1px solid #f2b8b8; color: #8a1c1c; }
.note { margin: 0 0 8px; padding: 6px 10px; border-radius: 6px; background: #eef3fb; border: 1px solid #c9d8ef; }
.note.bad { background: #fdecec; border-color: #f2b8b8; color: #8a1c1c; }
#token-box { margin: 0 0 10px; }
#token-box input { font: inherit; padding: 2px 6px; width: 260px; }
`;

const SCRIPT = `
"use strict";
var REFRESH_MS = 2000;
var token = "";
var lastGood = null;
var RATE_LABELS = [["logins", "logins routed"], ["forwards", "forwarded"], ["redirects", "redirected"],
  ["failed", "failed: no node"], ["refused", "refused by a limit"], ["authFailures", "passwords refused"]];

function $(id) { return document.getElementById(id); }
function el(tag, props, children) {
  var node = document.createElement(tag);
  if (props) for (var key in props) {
    if (key === "text") node.textContent = props[key];
    else if (key === "className") node.className = props[key];
    else node.setAttribute(key, props[key]);
  }
  (children || []).forEach(function (child) { if (child) node.appendChild(child); });
  return node;
}
function td(text, className) { return el("td", { text: text === null || text === undefined ? "-" : String(text), className: className || "" }); }
function fill(tbody, rows) { tbody.replaceChildren.apply(tbody, rows); }
function duration(seconds) {
  var d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600), m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
  return d > 0 ? d + "d " + h + "h" : h > 0 ? h + "h " + m + "m" : m > 0 ? m + "m " + s + "s" : s + "s";
}
function pill(state) { return el("span", { text: state, className: "pill state-" + state }); }

function renderInstance(status) {
  var i = status.instance, w = i.workers;
  var workers = w.configured > 1 ? w.running + "/" + w.configured + " workers" + (w.restarts > 0 ? ", " + w.restarts + " restarted" : "") : "1 process";
  $("instance").textContent = "version " + i.version + " · up " + duration(i.uptimeSeconds) + " · " + workers + " · pid " + i.pid + " · Node " + i.nodeVersion;
}

function renderNodes(status) {
  var counts = {};
  status.nodes.forEach(function (n) { counts[n.state] = (counts[n.state] || 0) + 1; });
  var summary = Object.keys(counts).map(function (k) { return counts[k] + " " + k; }).join(", ");
  $("node-summary").textContent = status.nodes.length + " known" + (summary ? ": " + summary : "");
  fill($("nodes").tBodies[0], status.nodes.map(function (n) {
    var action = n.state === "draining" ? "undrain" : "drain";
    var button = el("button", { type: "button", "data-action": action, "aria-label": action + " " + n.id, text: action === "drain" ? "Drain" : "Undrain" });
    button.addEventListener("click", function () { act(n.id, action, button); });
    // The store's drain flag does not reach a discovered node: it leaves by leaving its DNS name or file.
    if (n.source === "dns" || n.source === "file") button = el("span", { className: "muted", text: "drain in " + (n.source === "dns" ? "DNS" : "the file") });
    return el("tr", { "data-node": n.id, "data-state": n.state }, [
      td(n.id), el("td", { className: "state" }, [pill(n.state)]), td(n.source), td(n.zone), td(n.weight, "num"),
      td(n.domains.length ? n.domains.join(" ") : "all"), td(n.maxconn, "num"), td(n.sessions, "num sessions"), td(n.forwarded, "num forwarded"),
      td(n.internal), td(n.external), el("td", {}, [button]),
    ]);
  }));
  if (status.nodes.length === 0) fill($("nodes").tBodies[0], [el("tr", {}, [el("td", { colspan: "12", className: "muted", text: "no nodes: every login fails" })])]);
}

function renderRates(status) {
  var r = status.rates || { perMinute: null, streamErrors: {} };
  $("window").textContent = !status.rates ? "not available: the counters could not be read" : !r.perMinute ? "collecting…"
    : r.windowSeconds < 60 ? "events since the start, " + r.windowSeconds + " s ago" : "events per minute";
  $("rates").replaceChildren.apply($("rates"), RATE_LABELS.map(function (pair) {
    var value = r.perMinute ? r.perMinute[pair[0]] : null;
    return el("div", { "data-rate": pair[0] }, [el("dt", { text: pair[1] }), el("dd", { text: value === null ? "-" : String(value) })]);
  }));
  var conditions = Object.keys(r.streamErrors).sort(function (a, b) { return r.streamErrors[b] - r.streamErrors[a]; });
  fill($("stream-errors").tBodies[0], conditions.length ? conditions.map(function (c) { return el("tr", {}, [td(c), td(r.streamErrors[c], "num")]); })
    : [el("tr", {}, [el("td", { colspan: "2", className: "muted", text: "none" })])]);
}

function renderControl(status) {
  var store = status.store;
  $("store").replaceChildren(pill(store.up ? "up" : "down"), document.createTextNode(" " + store.kind + (store.kind === "memory" ? " (embedded)" : "")));
  fill($("discovery").tBodies[0], status.discovery.length ? status.discovery.map(function (d) {
    return el("tr", { "data-source": d.source }, [td(d.source), el("td", {}, [pill(d.state)]), td(d.nodes, "num")]);
  }) : [el("tr", {}, [el("td", { colspan: "3", className: "muted", text: "no --discover source" })])]);
  fill($("listeners").tBodies[0], status.listeners.length ? status.listeners.map(function (l) {
    // As --listen spells it: a bare HOST:PORT is a STARTTLS listener.
    var where = (l.kind === "starttls" ? "" : l.kind + "://") + l.address + (l.path || "");
    return el("tr", {}, [td(where, "keep"), td(l.mode + " at " + l.phase, "keep"), td(l.proxyProtocol ? "yes" : "no")]);
  }) : [el("tr", {}, [el("td", { colspan: "3", className: "muted", text: "none in this process" })])]);
  $("token-box").hidden = !status.admin.tokenRequired;
}

function render(status) {
  lastGood = new Date();
  $("banner").hidden = true;
  renderInstance(status);
  renderNodes(status);
  renderRates(status);
  renderControl(status);
  $("updated").textContent = "updated " + lastGood.toLocaleTimeString();
}

function showError(err) {
  $("banner").hidden = false;
  $("banner").textContent = "Cannot read the balancer's status (" + err.message + ")" + (lastGood ? "; showing what it said at " + lastGood.toLocaleTimeString() : "") + ".";
}

function reload() {
  return fetch("status", { cache: "no-store" })
    .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then(render)
    .catch(showError);
}

function refresh() {
  reload().then(function () { setTimeout(refresh, REFRESH_MS); });
}

var REFUSED = { 401: "refused: drain and undrain need the admin token (type it above)", 403: "refused: the request came from another web origin",
  421: "refused: this page was reached by a name the endpoint does not answer to (--admin-host)" };

function note(text, bad) {
  $("action").hidden = false;
  $("action").textContent = text;
  $("action").className = bad ? "note bad" : "note";
}

function act(id, action, button) {
  var headers = {};
  if (token) headers.Authorization = "Bearer " + token;
  button.disabled = true;
  fetch("nodes/" + encodeURIComponent(id) + "/" + action, { method: "POST", headers: headers, cache: "no-store" })
    .then(function (r) {
      return r.text().then(function (body) {
        if (r.ok) {
          note(id + (action === "drain" ? " drained: no new users, its sessions continue" : " undrained: it takes new users again"), false);
          return reload();
        }
        if (r.status === 401) $("token-box").hidden = false;
        var reason = REFUSED[r.status];
        if (!reason) { try { reason = "refused: " + JSON.parse(body).error; } catch (e) { reason = "refused: HTTP " + r.status; } }
        note(action + " " + id + " " + reason, true);
      });
    })
    .catch(function (err) { note(action + " " + id + " failed: " + err.message, true); })
    .then(function () { button.disabled = false; });
}

$("token").addEventListener("input", function (e) { token = e.target.value.trim(); });
refresh();
`;

const sha256 = (text: string): string => `'sha256-${createHash("sha256").update(text).digest("base64")}'`;

export const STATUS_PAGE: string = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>xmpp-lb status</title>
<style>${STYLE}</style>
</head>
<body>
<header><h1>xmpp-lb</h1><span id="instance" class="muted">loading…</span><span id="updated" class="muted"></span></header>
<main>
<div id="banner" class="banner" role="alert" hidden></div>
<section>
<h2>Nodes <span id="node-summary" class="muted"></span></h2>
<div id="token-box" hidden><label>Admin token <input id="token" type="password" autocomplete="off" spellcheck="false"></label>
<span class="muted">needed to drain and undrain; kept in this tab only</span></div>
<div id="action" class="note" role="status" hidden></div>
<table id="nodes"><thead><tr><th>node</th><th>state</th><th>source</th><th>zone</th><th class="num">weight</th><th>domains</th><th class="num">maxconn</th>
<th class="num">sessions</th><th class="num">forwarded</th><th>internal</th><th>external</th><th></th></tr></thead><tbody></tbody></table>
</section>
<div class="grid">
<div class="card"><h2>Last minute <span id="window" class="muted"></span></h2><dl id="rates" class="rates"></dl>
<h3>Stream errors sent, by condition</h3><table id="stream-errors"><tbody></tbody></table></div>
<div class="stack">
<div class="card"><h2>Store</h2><p id="store">-</p>
<h2>Discovery</h2><table id="discovery"><thead><tr><th>source</th><th>state</th><th class="num">nodes</th></tr></thead><tbody></tbody></table></div>
<div class="card"><h2>Listeners</h2><table id="listeners"><thead><tr><th>listener</th><th>decides</th><th>PROXY</th></tr></thead><tbody></tbody></table></div>
</div>
</div>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;

/**
 * The page's headers: its own script and style only (by hash), requests to
 * its own origin only, and never inside a frame (a page of another origin
 * must not lay it under its own clicks).
 */
export const STATUS_PAGE_HEADERS: Readonly<Record<string, string>> = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store",
  "content-security-policy": `default-src 'none'; script-src ${sha256(SCRIPT)}; style-src ${sha256(STYLE)}; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};
