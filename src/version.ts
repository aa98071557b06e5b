import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The package's version, read from its package.json (one level up from src/, two from dist/src/). */
function readVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let up = 0; up < 3; up++) {
    dir = path.dirname(dir);
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "xmpp-lb" && pkg.version !== undefined) return pkg.version;
    } catch {
      // not this directory
    }
  }
  return "unknown";
}

export const VERSION = readVersion();
