// What the deployment examples start the balancer with, read the way the image reads it: the flags of a
// manifest or a compose file (or the JSON file they mount), the image's own environment and command
// (from the Containerfile), checked against the real CLI's flags and the real configuration rules.

import { readFileSync } from "node:fs";
import path from "node:path";
import { parseAllDocuments } from "yaml";
import { resolveConfig, type BalancerConfig, type ConfigInput } from "../../src/config.js";
import { ROOT, runCli } from "./cli.js";

export const PACKAGE_VERSION = (JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string }).version;

/** Every document of a YAML file as plain data; a syntax error or warning in any of them throws. */
export function yamlDocuments(file: string): unknown[] {
  return parseAllDocuments(readFileSync(file, "utf8"), { prettyErrors: true }).map((doc, i) => {
    const problems = [...doc.errors, ...doc.warnings];
    if (problems.length > 0) throw new Error(`${path.basename(file)}, document ${i + 1}: ${problems.map((p) => p.message).join("; ")}`);
    return doc.toJS() as unknown;
  });
}

/** The image's defaults, as its Containerfile sets them. */
export function imageDefaults(): { metrics: string; command: string[] } {
  const text = readFileSync(path.join(ROOT, "Containerfile"), "utf8");
  const metrics = /\bXMPP_LB_METRICS=(\S+)/.exec(text)?.[1];
  const cmd = /^CMD (\[.*\])\s*$/m.exec(text)?.[1];
  if (metrics === undefined || cmd === undefined) throw new Error("the Containerfile sets no XMPP_LB_METRICS or no CMD");
  return { metrics, command: JSON.parse(cmd) as string[] };
}

let flags: Promise<Set<string>> | undefined;
/** The flags `xmpp-lb --help` lists (the balancer's, as yargs' strict mode accepts them). */
export function knownFlags(): Promise<Set<string>> {
  flags ??= runCli(["--help"]).done.then(({ code, stdout }) => {
    if (code !== 0) throw new Error(`xmpp-lb --help exited ${code}`);
    return new Set([...stdout.matchAll(/^\s+--([a-z][a-z0-9-]*)/gm)].map((m) => m[1]!));
  });
  return flags;
}

const camel = (flag: string): string => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** Flags (`--a=b`, `--a b`, `--flag`) as the CLI hands them to the configuration: repeated ones as lists. */
export function flagsToInput(args: readonly string[]): { flags: string[]; input: Record<string, unknown> } {
  const input: Record<string, unknown> = {};
  const names: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const m = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/s.exec(args[i]!);
    if (m === null) throw new Error(`'${args[i]}' is not a flag`);
    let value: unknown = m[2];
    if (value === undefined) value = args[i + 1] !== undefined && !args[i + 1]!.startsWith("--") ? args[++i] : true;
    names.push(m[1]!);
    const key = camel(m[1]!);
    input[key] = key in input ? [input[key], value].flat() : value;
  }
  return { flags: names, input };
}

/** A `--config` file's keys (flag names) as configuration input. */
export function configFileToInput(json: string): { flags: string[]; input: Record<string, unknown> } {
  const data = JSON.parse(json) as Record<string, unknown>;
  return { flags: Object.keys(data), input: Object.fromEntries(Object.entries(data).map(([k, v]) => [camel(k), v])) };
}

/**
 * The configuration the image would run: flags win over its environment (XMPP_LB_METRICS), which wins over a
 * --config file. Throws, as the CLI would refuse to start, on an unknown flag or a wrong value.
 */
export async function imageConfig(source: { flags: string[]; input: Record<string, unknown> }, from: "flags" | "file"): Promise<BalancerConfig> {
  const known = await knownFlags();
  const unknown = source.flags.filter((f) => !known.has(f));
  if (unknown.length > 0) throw new Error(`not flags of xmpp-lb: ${unknown.join(", ")}`);
  const input = { ...source.input };
  if (from === "file" || input.metrics === undefined) input.metrics = imageDefaults().metrics;
  return resolveConfig(input as ConfigInput);
}
