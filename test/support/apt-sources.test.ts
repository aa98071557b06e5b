import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { mirrorFor } from "./apt-sources.js";

describe("the machine's Debian mirror for debootstrap", () => {
  it("reads deb822 .sources stanzas: the entry listing the suite, not the security one", () => {
    const text = `Types: deb
# a comment
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://mirror.example/debian http://other.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`;
    assert.deepEqual(mirrorFor("bookworm", [["/etc/apt/sources.list.d/debian.sources", text]]), {
      uri: "http://mirror.example/debian",
      keyring: "/usr/share/keyrings/debian-archive-keyring.gpg",
    });
  });

  it("skips disabled stanzas, deb-src only entries and an inline key", () => {
    const text = `Types: deb
URIs: http://off.example/debian
Suites: trixie
Enabled: no

Types: deb-src
URIs: http://src.example/debian
Suites: trixie

Types: deb
URIs: http://on.example/debian
Suites: trixie
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 -----END PGP PUBLIC KEY BLOCK-----
`;
    assert.deepEqual(mirrorFor("trixie", [["x.sources", text]]), { uri: "http://on.example/debian" });
  });

  it("reads one-line sources.list entries, with options, in file order", () => {
    const list = `# deb http://commented.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/etc/apt/keyrings/k.gpg] http://one.example/debian bookworm main contrib
`;
    assert.deepEqual(mirrorFor("bookworm", [["/etc/apt/sources.list", list], ["b.sources", "Types: deb\nURIs: http://later.example/debian\nSuites: bookworm\n"]]), {
      uri: "http://one.example/debian",
      keyring: "/etc/apt/keyrings/k.gpg",
    });
    assert.equal(mirrorFor("sid", [["/etc/apt/sources.list", list]]), null);
  });
});
