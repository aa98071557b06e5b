import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { ROOT } from "../support/cli.js";
import { PACKAGE_VERSION, flagsToInput, imageConfig, imageDefaults, yamlDocuments } from "../support/example-config.js";

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile?: string };
  command?: string[];
  ports?: string[];
  volumes?: string[];
  depends_on?: string[];
  stop_grace_period?: string;
}

const DIR = path.join(ROOT, "examples/compose");

function compose(): Record<string, ComposeService> {
  const docs = yamlDocuments(path.join(DIR, "compose.yaml"));
  assert.equal(docs.length, 1);
  return (docs[0] as { services: Record<string, ComposeService> }).services;
}

/** `40s`, `1m30s` as compose reads a duration. */
function seconds(duration: string): number {
  let total = 0;
  for (const [, n, unit] of duration.matchAll(/(\d+(?:\.\d+)?)(h|m|s|ms)/g)) total += Number(n) * { h: 3600, m: 60, s: 1, ms: 0.001 }[unit as "h" | "m" | "s" | "ms"];
  return total;
}

describe("the compose example", () => {
  it("parses, with the balancer, Redis and two Prosody nodes", () => {
    const services = compose();
    assert.ok("xmpp-lb" in services && "redis" in services);
    assert.equal(Object.values(services).filter((s) => /prosody/.test(s.image ?? "")).length, 2);
  });

  it("builds the balancer's image from the repository's Containerfile", () => {
    const lb = compose()["xmpp-lb"]!;
    assert.equal(lb.image, `xmpp-lb:${PACKAGE_VERSION}`);
    assert.ok(lb.build !== undefined);
    assert.ok(existsSync(path.join(DIR, lb.build.context, lb.build.dockerfile ?? "Dockerfile")), "the build context holds the Containerfile");
    assert.equal(path.resolve(DIR, lb.build.context), path.resolve(ROOT));
  });

  it("starts the balancer with flags it accepts, in front of the services it names", async () => {
    const services = compose();
    const lb = services["xmpp-lb"]!;
    const config = await imageConfig(flagsToInput(lb.command ?? []), "flags");
    assert.equal(new URL(config.store).hostname, "redis");
    assert.deepEqual(config.nodes.map((n) => n.internal.host).sort(), Object.keys(services).filter((s) => s.startsWith("prosody")).sort());
    for (const needed of [new URL(config.store).hostname, ...config.nodes.map((n) => n.internal.host)]) assert.ok(lb.depends_on?.includes(needed), `starts after ${needed}`);
    // Files it reads are in the image.
    for (const cert of config.tls!.certificates) for (const f of [cert.certFile, cert.keyFile]) assert.ok(existsSync(path.join(ROOT, f.replace(/^\/app\//, ""))), `${f} is in the image`);

    // Published: the listener, and the admin endpoint, answering to the names the port mapping is reached by.
    const published = (lb.ports ?? []).map((p) => Number(p.split(":").at(-1)));
    for (const l of config.listeners) assert.ok(published.includes(l.port), `listener port ${l.port} is published`);
    const adminPort = Number(imageDefaults().metrics.split(":").at(-1));
    assert.ok(published.includes(adminPort));
    assert.ok(config.adminHosts.includes("localhost"), "--admin-host=localhost: the mapped port is reached as localhost");

    assert.ok(seconds(lb.stop_grace_period ?? "10s") > config.shutdownTimeoutMs / 1000, "stop_grace_period is above --shutdown-timeout");
  });

  it("mounts the Prosody configuration it ships", () => {
    for (const [name, service] of Object.entries(compose()).filter(([n]) => n.startsWith("prosody"))) {
      const source = service.volumes?.[0]?.split(":")[0];
      assert.ok(source !== undefined && existsSync(path.join(DIR, source)), `${name} mounts ${source ?? "nothing"}`);
    }
  });
});
