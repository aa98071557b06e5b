import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import type { BalancerConfig } from "../../src/config.js";
import { ROOT } from "../support/cli.js";
import { PACKAGE_VERSION, configFileToInput, flagsToInput, imageConfig, imageDefaults, yamlDocuments } from "../support/example-config.js";

// Only the fields these checks read.
interface Port { name?: string; containerPort: number }
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  ports?: Port[];
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  securityContext?: { runAsNonRoot?: boolean };
  volumeMounts?: Array<{ name: string; mountPath: string; subPath?: string }>;
}
interface PodSpec { terminationGracePeriodSeconds?: number; containers: Container[]; volumes?: Array<{ name: string; configMap?: { name: string }; secret?: { secretName: string } }> }
interface Resource {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
}
interface Workload extends Resource { spec: { replicas?: number; serviceName?: string; selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> }; spec: PodSpec } } }
interface Service extends Resource { spec: { type?: string; clusterIP?: string; selector: Record<string, string>; ports: Array<{ name?: string; port: number; targetPort?: string | number }> } }
interface Budget extends Resource { spec: { minAvailable?: number; maxUnavailable?: number; selector: { matchLabels: Record<string, string> } } }

const DIR = path.join(ROOT, "examples/kubernetes");
const FILES = readdirSync(DIR).filter((f) => f.endsWith(".yaml")).sort();
const IMAGE = new RegExp(`/xmpp-lb:${PACKAGE_VERSION.replace(/\./g, "\\.")}$`);
const selects = (selector: Record<string, string>, labels: Record<string, string>): boolean => Object.entries(selector).every(([k, v]) => labels[k] === v);

/** The balancer's Deployment in a file, and the configuration its container runs with. */
async function balancerOf(resources: Resource[]): Promise<{ deployment: Workload; container: Container; config: BalancerConfig }> {
  const deployments = (resources.filter((r) => r.kind === "Deployment") as Workload[]).filter((d) => d.spec.template.spec.containers.some((c) => IMAGE.test(c.image)));
  assert.equal(deployments.length, 1, "one Deployment runs the balancer's image");
  const deployment = deployments[0]!;
  const container = deployment.spec.template.spec.containers.find((c) => IMAGE.test(c.image))!;
  assert.equal(container.command, undefined, "the image's entrypoint (tini, then the balancer) is kept");
  if (container.args !== undefined) return { deployment, container, config: await imageConfig(flagsToInput(container.args), "flags") };

  // No args: the image's CMD, --config FILE, with FILE mounted from a ConfigMap.
  const [flag, file] = imageDefaults().command;
  assert.equal(flag, "--config");
  const mount = container.volumeMounts?.find((m) => m.mountPath === file);
  assert.ok(mount?.subPath !== undefined, `${file!} is mounted (the image's --config)`);
  const volume = deployment.spec.template.spec.volumes?.find((v) => v.name === mount.name);
  const configMap = resources.find((r) => r.kind === "ConfigMap" && r.metadata.name === volume?.configMap?.name);
  const json = configMap?.data?.[mount.subPath];
  assert.ok(json !== undefined, `the ConfigMap holds ${mount.subPath}`);
  return { deployment, container, config: await imageConfig(configFileToInput(json), "file") };
}

describe("the Kubernetes examples", () => {
  it("has manifests to check", () => assert.deepEqual(FILES, ["headless-service.yaml", "xmpp-lb.yaml"]));

  for (const file of FILES) {
    describe(file, () => {
      const resources = (): Resource[] => yamlDocuments(path.join(DIR, file)) as Resource[];

      it("parses: every document is a named resource", () => {
        for (const r of resources()) {
          assert.match(r.apiVersion, /^[a-z0-9.]*\/?v\d/);
          assert.match(r.kind, /^[A-Z][A-Za-z]+$/);
          assert.match(r.metadata.name, /^[a-z0-9-]+$/);
        }
      });

      it("runs the image built from the Containerfile, as its non-root user, with a configuration the balancer accepts", async () => {
        const { container, config } = await balancerOf(resources());
        assert.match(container.image, IMAGE);
        assert.equal(container.securityContext?.runAsNonRoot, true);
        // Every file the balancer reads is in a mounted volume.
        for (const cert of config.tls?.certificates ?? []) {
          for (const f of [cert.certFile, cert.keyFile]) assert.ok(container.volumeMounts?.some((m) => f.startsWith(`${m.mountPath}/`)), `${f} is mounted`);
        }
        // Every listener's port and the admin port are declared.
        const declared = (container.ports ?? []).map((p) => p.containerPort);
        for (const l of config.listeners) assert.ok(declared.includes(l.port), `listener port ${l.port} is declared`);
        assert.ok(declared.includes(config.metrics!.port));
      });

      it("is ready only while /healthz answers 200, on the admin port", async () => {
        const { container, config } = await balancerOf(resources());
        const probe = container.readinessProbe?.httpGet;
        assert.equal(probe?.path, "/healthz");
        const port = typeof probe!.port === "number" ? probe!.port : container.ports?.find((p) => p.name === probe!.port)?.containerPort;
        assert.equal(port, config.metrics!.port);
      });

      it("gives a stopping pod more time than --shutdown-timeout", async () => {
        const { deployment, config } = await balancerOf(resources());
        const grace = deployment.spec.template.spec.terminationGracePeriodSeconds ?? 30;
        assert.ok(grace * 1000 > config.shutdownTimeoutMs, `terminationGracePeriodSeconds ${grace} s > --shutdown-timeout ${config.shutdownTimeoutMs / 1000} s`);
      });

      it("has a PodDisruptionBudget that keeps a balancer up and still lets a drain go on", async () => {
        const all = resources();
        const { deployment } = await balancerOf(all);
        const budgets = (all.filter((r) => r.kind === "PodDisruptionBudget") as Budget[]).filter((b) => selects(b.spec.selector.matchLabels, deployment.spec.template.metadata.labels));
        assert.equal(budgets.length, 1);
        const budget = budgets[0]!;
        assert.equal(budget.apiVersion, "policy/v1");
        assert.equal(budget.metadata.namespace, deployment.metadata.namespace);
        const replicas = deployment.spec.replicas ?? 1;
        const allowed = budget.spec.minAvailable !== undefined ? replicas - budget.spec.minAvailable : budget.spec.maxUnavailable!;
        assert.ok(allowed >= 1 && allowed < replicas, `${replicas} replicas, ${allowed} may be evicted at once`);
      });

      it("is behind a LoadBalancer Service: an NLB sending PROXY v2 to listeners that read it", async () => {
        const all = resources();
        const { deployment, container, config } = await balancerOf(all);
        const services = (all.filter((r) => r.kind === "Service") as Service[]).filter((s) => s.spec.type === "LoadBalancer" && selects(s.spec.selector, deployment.spec.template.metadata.labels));
        assert.equal(services.length, 1);
        const service = services[0]!;
        assert.equal(service.metadata.namespace, deployment.metadata.namespace);
        const annotations = service.metadata.annotations ?? {};
        assert.equal(annotations["service.beta.kubernetes.io/aws-load-balancer-type"], "external");
        assert.equal(annotations["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"], "ip");
        assert.equal(annotations["service.beta.kubernetes.io/aws-load-balancer-proxy-protocol"], "*");
        assert.equal(annotations["service.beta.kubernetes.io/aws-load-balancer-healthcheck-path"], "/healthz");
        assert.equal(annotations["service.beta.kubernetes.io/aws-load-balancer-healthcheck-port"], String(config.metrics!.port));
        for (const l of config.listeners) assert.ok(l.proxyProtocol, `listener ${l.name} reads the NLB's PROXY header`);
        for (const p of service.spec.ports) {
          const target = typeof p.targetPort === "number" ? p.targetPort : container.ports?.find((c) => c.name === p.targetPort)?.containerPort;
          assert.ok(config.listeners.some((l) => l.port === target), `Service port ${p.port} reaches a listener`);
        }
      });
    });
  }

  it("headless-service.yaml: the balancer discovers the nodes through the SRV name of their headless Service", async () => {
    const all = yamlDocuments(path.join(DIR, "headless-service.yaml")) as Resource[];
    const { deployment, config } = await balancerOf(all);
    const srv = config.discovery.filter((d) => d.kind === "dns+srv");
    assert.equal(srv.length, 1);
    const headless = (all.filter((r) => r.kind === "Service") as Service[]).find((s) => s.spec.clusterIP === "None")!;
    const namespace = headless.metadata.namespace ?? "default";
    assert.equal(namespace, deployment.metadata.namespace);
    const port = headless.spec.ports.find((p) => p.name !== undefined)!;
    assert.equal(srv[0]!.kind === "dns+srv" && srv[0]!.name, `_${port.name!}._tcp.${headless.metadata.name}.${namespace}.svc.cluster.local`);
    const nodes = (all.filter((r) => r.kind === "StatefulSet") as Workload[]).find((s) => s.spec.serviceName === headless.metadata.name);
    assert.ok(nodes !== undefined && selects(headless.spec.selector, nodes.spec.template.metadata.labels), "the headless Service selects the nodes' StatefulSet");
  });
});
