import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { SERVE_FLAGS, type Flag } from "../../src/flags.js";
import { NODE_KEYS, nodeSyntax, parseNode } from "../../src/node-keys.js";
import { ROOT, runCli } from "../support/cli.js";

const FLAGS = Object.entries(SERVE_FLAGS) as Array<[string, Flag]>;
const NAMES = FLAGS.map(([name]) => name);

interface ReadmeRow {
  flags: string[];
  default: string;
  meaning: string;
}

/** The rows of the README's "## Flags" table. */
function readmeFlagRows(): ReadmeRow[] {
  const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
  const start = readme.indexOf("\n## Flags\n");
  assert.ok(start >= 0, "the README has a Flags section");
  const section = readme.slice(start, readme.indexOf("\n## ", start + 1));
  return section
    .split("\n")
    .filter((line) => line.startsWith("| `--"))
    .map((line) => {
      const [, flags = "", byDefault = "", meaning = ""] = line.split(/(?<!\\)\|/).map((cell) => cell.trim());
      return { flags: [...flags.matchAll(/`--([a-z-]+)`/g)].map((m) => m[1]!), default: byDefault, meaning };
    });
}

/** A default as the README's table writes it. */
function readmeDefault(value: unknown): string {
  if (value === false) return "off";
  return Array.isArray(value) ? value.join(" ") : String(value);
}

const camelCase = (name: string): string => name.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());

describe("flags: one table for yargs, resolveConfig, --help and the README", () => {
  const rows = readmeFlagRows();

  it("the README's flag table lists every flag, and no other", () => {
    const documented = rows.flatMap((row) => row.flags);
    assert.deepEqual([...documented].sort(), [...NAMES].sort());
  });

  it("the README gives each flag's default", () => {
    for (const [name, flag] of FLAGS) {
      if (flag.default === undefined) continue;
      const row = rows.find((r) => r.flags.includes(name))!;
      assert.equal(row.default.replace(/`/g, ""), readmeDefault(flag.default), `--${name}`);
    }
  });

  it("a configuration field is named after its flag: camelCase, plural when repeatable, Ms when given in seconds", () => {
    // The flag is a verb; its field names what it gives.
    const nouns: Record<string, string> = { discover: "discovery" };
    for (const [name, flag] of FLAGS) {
      if (flag.field === undefined) continue;
      const plural = flag.array === true && !name.endsWith("s") ? "s" : "";
      const unit = flag.describe.startsWith("seconds") ? "Ms" : "";
      assert.equal(flag.field, nouns[name] ?? `${camelCase(name)}${plural}${unit}`, `--${name}`);
    }
  });

  it("--node: its help, the README and parseNode know the same keys", async () => {
    const keys = Object.keys(NODE_KEYS);
    assert.deepEqual([...nodeSyntax().matchAll(/([a-z-]+)=/g)].map((m) => m[1]), keys);
    assert.throws(() => parseNode("id=n1,internal=h:1,colour=blue"), new RegExp(`\\(${keys.join(", ")}\\)`));

    const readmeSyntax = /`([^`]+)`/.exec(rows.find((r) => r.flags.includes("node"))!.meaning)?.[1]?.replace(/\\\|/g, "|");
    assert.equal(readmeSyntax, nodeSyntax(), "the README's --node row");

    const { code, stdout } = await runCli(["--help"]).done;
    assert.equal(code, 0);
    // --help wraps the syntax anywhere; without whitespace it reads whole again.
    assert.ok(stdout.replace(/\s+/g, "").includes(nodeSyntax()), "the --node help");
  });

  it("xmpp-lb --help lists every flag, and no other", async () => {
    const { code, stdout } = await runCli(["--help"]).done;
    assert.equal(code, 0);
    const listed = [...stdout.matchAll(/^ {2}--([a-z-]+)/gm)].map((m) => m[1]!);
    assert.deepEqual(listed.sort(), [...NAMES, "config", "help", "version"].sort());
  });
});
