// The Debian mirror this machine already uses for a suite, read from its APT sources (one-line
// sources.list entries and deb822 .sources files), so debootstrap asks the same mirror apt does.

import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";

export interface Mirror {
  uri: string;
  /** The entry's Signed-By keyring file, when it names one. */
  keyring?: string;
}

interface Entry {
  types: string[];
  uris: string[];
  suites: string[];
  signedBy?: string;
}

/** `deb [signed-by=/k.gpg arch=amd64] http://mirror/debian bookworm main` */
function oneLine(text: string): Entry[] {
  const entries: Entry[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    const m = /^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)/.exec(line);
    if (m === null) continue;
    const signedBy = /(?:^|\s)signed-by=(\S+)/.exec(m[2] ?? "")?.[1];
    entries.push({ types: [m[1]!], uris: [m[3]!], suites: [m[4]!], ...(signedBy === undefined ? {} : { signedBy }) });
  }
  return entries;
}

/** deb822: stanzas of `Key: value` separated by blank lines; a continuation line starts with a space. */
function deb822(text: string): Entry[] {
  const entries: Entry[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let last = "";
    for (const line of stanza.split("\n")) {
      if (line.startsWith("#")) continue;
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
      if (m !== null) fields.set((last = m[1]!.toLowerCase()), m[2]!.trim());
      else if (/^\s/.test(line) && last !== "") fields.set(last, `${fields.get(last)!}\n${line.trim()}`);
    }
    if (!fields.has("uris") || /^no$/i.test(fields.get("enabled") ?? "yes")) continue;
    const words = (key: string): string[] => (fields.get(key) ?? "").split(/\s+/).filter(Boolean);
    const signedBy = fields.get("signed-by");
    // A Signed-By holding the key itself (several lines) names no file.
    entries.push({ types: words("types"), uris: words("uris"), suites: words("suites"), ...(signedBy === undefined || signedBy.includes("\n") ? {} : { signedBy }) });
  }
  return entries;
}

/** The first `deb` entry for `suite` in these files' contents (name → text), in the order given. */
export function mirrorFor(suite: string, files: ReadonlyArray<[name: string, text: string]>): Mirror | null {
  for (const [name, text] of files) {
    const entries = name.endsWith(".sources") ? deb822(text) : oneLine(text);
    const hit = entries.find((e) => e.types.includes("deb") && e.suites.includes(suite) && e.uris.length > 0);
    if (hit !== undefined) return { uri: hit.uris[0]!, ...(hit.signedBy === undefined ? {} : { keyring: hit.signedBy }) };
  }
  return null;
}

/** The machine's mirror for `suite`: /etc/apt/sources.list, then sources.list.d/*.list and *.sources. */
export function machineMirror(suite: string, root = "/etc/apt"): Mirror | null {
  const files: Array<[string, string]> = [];
  const read = (file: string): void => {
    try {
      files.push([file, readFileSync(file, "utf8")]);
    } catch {
      // absent: the other files may have it
    }
  };
  read(path.join(root, "sources.list"));
  let names: string[] = [];
  try {
    names = readdirSync(path.join(root, "sources.list.d")).sort();
  } catch {
    // no directory
  }
  for (const name of names) if (name.endsWith(".list") || name.endsWith(".sources")) read(path.join(root, "sources.list.d", name));
  return mirrorFor(suite, files);
}
