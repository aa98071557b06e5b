// Prosody's own stringprep (util.encodings, backed by ICU), the reference the
// balancer's src/xmpp/stringprep.ts must agree with. Every string goes through
// one lua process; inputs and outputs travel as hex so no quoting can bite.

import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";

/** The Debian prosody package depends on lua5.4; its C modules live next to the Lua ones. */
const LUA = "/usr/bin/lua5.4";
const PROSODY_LIB = "/usr/lib/prosody";

export type StringprepProfile = "nodeprep" | "nameprep";

export const prosodyAvailable = existsSync(LUA) && existsSync(`${PROSODY_LIB}/util/encodings.so`);

// Non-strict, as util/jid.lua's prep and the SASL code call it: unassigned code points are allowed.
const SCRIPT = `
package.cpath = "${PROSODY_LIB}/?.so;" .. package.cpath
local stringprep = require "util.encodings".stringprep
local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
for line in io.lines() do
  local profile, input = line:match("^(%a+) (%x*)$")
  input = input:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
  local output = stringprep[profile](input)
  io.write(output and hex(output) or "nil", "\\n")
end
`;

/** Prosody's result for each [profile, input]; null where Prosody returns nil. */
export function prosodyStringprep(cases: ReadonlyArray<readonly [StringprepProfile, string]>): Array<string | null> {
  const input = cases.map(([profile, s]) => `${profile} ${Buffer.from(s, "utf8").toString("hex")}\n`).join("");
  const stdout = execFileSync(LUA, ["-e", SCRIPT], { input, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  const lines = stdout.split("\n").slice(0, -1);
  if (lines.length !== cases.length) throw new Error(`lua answered ${lines.length} of ${cases.length} strings`);
  return lines.map((line) => (line === "nil" ? null : Buffer.from(line, "hex").toString("utf8")));
}
