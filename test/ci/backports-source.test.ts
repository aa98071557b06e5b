import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { promisify } from "node:util";

const SCRIPT = new URL("../../.ci/backports-source", import.meta.url).pathname;
const run = promisify(execFile);

/**
 * .ci/backports-source: CI installs Prosody 13 and ejabberd 24.12 from
 * bookworm-backports, added from the machine's own Debian source. Run on
 * APT directories laid out as Debian writes them.
 */
describe(".ci/backports-source", () => {
  const dirs: string[] = [];
  after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));
  const aptDir = async (files: Record<string, string>): Promise<string> => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "xmpp-lb-apt-"));
    dirs.push(dir);
    await mkdir(path.join(dir, "sources.list.d"));
    for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
    return dir;
  };
  const ours = (dir: string): string => path.join(dir, "sources.list.d", "xmpp-lb-backports.sources");

  it("adds the suite from a deb822 entry: same mirror and keyring", async () => {
    const dir = await aptDir({
      "sources.list.d/debian.sources":
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n",
    });
    await run("bash", [SCRIPT, dir]);
    const text = readFileSync(ours(dir), "utf8");
    assert.match(text, /^URIs: http:\/\/mirror\.example\/debian$/m);
    assert.match(text, /^Suites: bookworm-backports$/m);
    assert.match(text, /^Signed-By: \/usr\/share\/keyrings\/debian-archive-keyring\.gpg$/m);
    await run("bash", [SCRIPT, dir]);
    assert.equal(readFileSync(ours(dir), "utf8"), text, "idempotent");
  });

  it("adds it from a one-line entry, and nothing where a source lists it already", async () => {
    const oneLine = await aptDir({ "sources.list": "deb [signed-by=/k.gpg] http://one.example/debian bookworm main\n" });
    await run("bash", [SCRIPT, oneLine]);
    assert.match(readFileSync(ours(oneLine), "utf8"), /URIs: http:\/\/one\.example\/debian[\s\S]*Signed-By: \/k\.gpg/);
    const listed = await aptDir({ "sources.list": "deb http://one.example/debian bookworm main\ndeb http://one.example/debian bookworm-backports main\n" });
    await run("bash", [SCRIPT, listed]);
    assert.equal(existsSync(ours(listed)), false);
  });

  it("fails, saying why, on a machine with no bookworm source", async () => {
    const dir = await aptDir({ "sources.list": "deb http://security.example/debian-security bookworm-security main\n" });
    await assert.rejects(run("bash", [SCRIPT, dir]), (err: { code?: number; stderr?: string }) => err.code === 1 && /bookworm/.test(err.stderr ?? ""));
  });
});
