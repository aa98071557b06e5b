import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

export interface SlixmppResult {
  ok: boolean;
  jid?: string;
  node?: string;
  redirects: string[];
  address?: [string, number];
  error?: string;
}

const SCRIPT = fileURLToPath(new URL("../clients/slixmpp_client.py", import.meta.url));
const CA = fileURLToPath(new URL("../../examples/tls/ca.pem", import.meta.url));

/** Runs Debian's slixmpp (a second, independent client) against host:port; resolves with its JSON report. */
export async function slixmppLogin(opts: { jid: string; password: string; port: number; host?: string; mech?: string }): Promise<SlixmppResult> {
  const args = [SCRIPT, "--jid", opts.jid, "--password", opts.password, "--host", opts.host ?? "127.0.0.1", "--port", String(opts.port), "--ca", CA, "--timeout", "20"];
  if (opts.mech !== undefined) args.push("--mech", opts.mech);
  try {
    const { stdout } = await promisify(execFile)("/usr/bin/python3", args, { timeout: 30_000 });
    return JSON.parse(stdout) as SlixmppResult;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    if (e.stdout) return JSON.parse(e.stdout) as SlixmppResult;
    throw new Error(`slixmpp client failed to run: ${e.message}\n${e.stderr ?? ""}`);
  }
}
