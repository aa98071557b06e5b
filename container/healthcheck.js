// The image's HEALTHCHECK: GET /healthz on the admin endpoint that XMPP_LB_METRICS names (the image sets
// 0.0.0.0:9102), dialled on loopback when it is bound to every interface. Exit 0: healthy (200); 1: not.
// node:http rather than fetch(), which refuses the Fetch standard's "bad ports" (6000, 6665, …).
import http from "node:http";

const address = process.env.XMPP_LB_METRICS?.trim() ?? "";
const parsed = /^\[?([^\]]*)\]?:(\d+)$/.exec(address);
if (parsed === null) {
  console.error(`no admin endpoint to check: XMPP_LB_METRICS is '${address}', not HOST:PORT`);
  process.exit(1);
}
const [, bound, port] = parsed;
const host = bound === "" || bound === "0.0.0.0" ? "127.0.0.1" : bound === "::" ? "::1" : bound;
const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}/healthz`;

const request = http.get(url, { timeout: 4000 }, (answer) => {
  let body = "";
  answer.setEncoding("utf8");
  answer.on("data", (chunk) => (body += chunk));
  answer.on("end", () => {
    console.log(`${url}: ${answer.statusCode} ${body.trim()}`);
    process.exit(answer.statusCode === 200 ? 0 : 1);
  });
});
request.on("timeout", () => request.destroy(new Error("no answer within 4 s")));
request.on("error", (err) => {
  console.error(`${url}: ${err.message}`);
  process.exit(1);
});
