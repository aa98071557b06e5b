import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { bareJid, normalizeDomain, normalizeLocal, parseBareJid } from "../../src/xmpp/jid.js";
import { nameprep, nodeprep } from "../../src/xmpp/stringprep.js";
import { prosodyAvailable, prosodyStringprep, type StringprepProfile } from "../support/prosody-stringprep.js";

// Tricky localparts; the expected output of each is whatever Prosody says.
const LOCALPARTS: Array<[label: string, input: string]> = [
  ["ASCII upper case", "Alice"],
  ["ASCII letters, digits and ._+- (the plain path)", "Alice.Smith_2+Tag-x"],
  ["ASCII with a character off the plain path", "Alice.Smith~2"],
  ["sharp s", "Straße"],
  ["capital sharp s (unassigned in Unicode 3.2: passes through)", "\u1e9e"],
  ["long s", "ſam"],
  ["fi ligature", "ﬁx"],
  ["ff ligature", "ﬀ"],
  ["dotless i", "ı"],
  ["dotted capital I", "İstanbul"],
  ["full-width letters", "Ａｌｉｃｅ"],
  ["e + combining acute", "e\u0301"],
  ["precomposed é", "é"],
  ["Greek final sigma", "ΟΔΥΣΣΕΎΣ"],
  ["Greek final sigma, lower case", "οδυσσεύς"],
  ["title-case digraph", "ǅ"],
  ["j with caron (B.2 expansion)", "ǰ"],
  ["Kelvin sign", "\u212a"],
  ["superscript two", "x²"],
  ["circled digit", "①"],
  ["squared MHz", "㎒"],
  ["Georgian capital (lower case added after 3.2)", "Ⴀ"],
  ["Cherokee capital (lower case added after 3.2)", "Ꭰ"],
  ["Corrigendum #4 CJK compatibility ideograph", "\u{2f868}"],
  ["Hangul jamo", "\u1112\u1161\u11ab"],
  ["soft hyphen (B.1)", "al\u00adice"],
  ["zero-width joiner (B.1)", "al\u200dice"],
  ["zero-width non-joiner (B.1)", "al\u200cice"],
  ["only a B.1 character", "\u00ad"],
  ["byte order mark (B.1)", "\ufeffalice"],
  ["NUL (C.2.1)", "a\u0000b"],
  ["space (C.1.1)", "al ice"],
  ["ideographic space (NFKC makes it a space, C.1.1)", "a\u3000b"],
  ["ogham space mark (C.1.2)", "a\u1680b"],
  ["left-to-right mark (C.8)", "a\u200eb"],
  ["private use (C.3)", "a\ue000"],
  ["non-character (C.4)", "a\ufdd0"],
  ["tag character (C.9)", "a\u{e0041}"],
  ["@", "a@b"],
  ["apostrophe", "o'brien"],
  ["full-width solidus (NFKC makes it '/')", "a\uff0fb"],
  ["Hebrew", "שלום"],
  ["Arabic", "مرحبا"],
  ["Hebrew with a digit inside", "ש1ם"],
  ["Hebrew ending in a digit", "שלום1"],
  ["Hebrew and Latin", "שלוםabc"],
  ["unassigned code point", "a\u0378"],
];

const DOMAINS: Array<[label: string, input: string]> = [
  ["mixed case", "EXAMPLE.com"],
  ["ASCII letters, digits, dots and hyphens (the plain path)", "Sub-Domain.Example2.ORG"],
  ["umlaut", "Bücher.example"],
  ["umlaut, decomposed", "BU\u0308CHER.example"],
  ["sharp s", "Straße.example"],
  ["full-width letters", "ｅｘａｍｐｌｅ.com"],
  ["full-width full stop", "example．com"],
  ["ideographic full stop (not a dot to Nameprep)", "example。com"],
  ["ACE label", "xn--bcher-kva.example"],
  ["space (allowed by Nameprep)", "a b.example"],
  ["ideographic space (NFKC makes it a space, which Nameprep allows)", "a\u3000b.example"],
  ["ogham space mark (C.1.2)", "a\u1680b.example"],
  ["right-to-left across labels", "א1.ב"],
  ["right-to-left label ending in a digit", "א1"],
  ["Hebrew and Latin", "שלום.example"],
];

/** Every BMP character on its own, through both profiles: checks the generated tables wholesale. */
const BMP = Array.from({ length: 0x10000 }, (_, cp) => cp)
  .filter((cp) => cp < 0xd800 || cp > 0xdfff)
  .map((cp) => String.fromCodePoint(cp));

const CASES: Array<readonly [StringprepProfile, string]> = [
  ...LOCALPARTS.map(([, s]) => ["nodeprep", s] as const),
  ...DOMAINS.map(([, s]) => ["nameprep", s] as const),
  ...BMP.flatMap((s) => [["nodeprep", s] as const, ["nameprep", s] as const]),
];

const PREP = { nodeprep, nameprep };
const show = (s: string | null): string => (s === null ? "null" : JSON.stringify(s));

// CI installs Prosody (and so lua): without it this suite fails rather than skipping silently.
describe("stringprep agrees with Prosody 0.12", () => {
  const expected = new Map<string, string | null>();
  before(() => {
    assert.ok(prosodyAvailable, "lua5.4 and Prosody's util.encodings are needed: apt-get install prosody");
    const answers = prosodyStringprep(CASES);
    CASES.forEach(([profile, s], i) => expected.set(`${profile} ${s}`, answers[i] ?? null));
  });
  const agrees = (profile: StringprepProfile, input: string): void => {
    const want = expected.get(`${profile} ${input}`);
    assert.notEqual(want, undefined, `no answer from Prosody for ${show(input)}`);
    const got = PREP[profile](input);
    assert.equal(got, want, `${profile}(${show(input)}) = ${show(got)}, Prosody says ${show(want ?? null)}`);
  };

  for (const [label, input] of LOCALPARTS) it(`nodeprep: ${label}`, () => agrees("nodeprep", input));
  for (const [label, input] of DOMAINS) it(`nameprep: ${label}`, () => agrees("nameprep", input));

  it("normalizeDomain gives Prosody's Nameprep wherever Prosody accepts the name", () => {
    for (const [, input] of DOMAINS) {
      const want = expected.get(`nameprep ${input}`);
      if (want) assert.equal(normalizeDomain(input), want, show(input));
    }
  });

  it("nodeprep and nameprep: every BMP character alone", () => {
    const wrong = CASES.slice(LOCALPARTS.length + DOMAINS.length)
      .filter(([profile, s]) => PREP[profile](s) !== expected.get(`${profile} ${s}`))
      .map(([profile, s]) => `${profile} U+${s.codePointAt(0)!.toString(16).padStart(4, "0")}`);
    assert.deepEqual(wrong.slice(0, 20), []);
  });
});

describe("bare JIDs", () => {
  it("folds both parts", () => {
    assert.equal(parseBareJid("Alice@Example.COM/Phone")?.bare, "alice@example.com");
    assert.equal(bareJid("Straße", "EXAMPLE.com."), "strasse@example.com");
    assert.equal(bareJid("Ａｌｉｃｅ", "lb.test"), "alice@lb.test");
  });
  it("drops a domain's trailing dot and surrounding blanks", () => {
    assert.equal(normalizeDomain(" Example.COM. "), "example.com");
  });
  it("lower-cases a domain Nameprep refuses instead of refusing it", () => {
    assert.equal(nameprep("Shalom-שלום.Example"), null);
    assert.equal(normalizeDomain("Shalom-שלום.Example"), "shalom-שלום.example");
  });
  it("refuses localparts that are empty, too long or prohibited", () => {
    assert.equal(normalizeLocal(""), null);
    assert.equal(normalizeLocal("\u00ad"), null, "empty once B.1 characters are gone");
    assert.equal(normalizeLocal("a".repeat(1023)), "a".repeat(1023));
    assert.equal(normalizeLocal("a".repeat(1024)), null);
    assert.equal(normalizeLocal("al ice"), null);
    assert.equal(normalizeLocal("a\u0000b"), null);
  });
  it("refuses JIDs without a localpart or domain, or with two @", () => {
    assert.equal(parseBareJid("@example.com"), null);
    assert.equal(parseBareJid("alice@"), null);
    assert.equal(parseBareJid("alice@."), null);
    assert.equal(parseBareJid("a@b@c"), null);
    assert.equal(parseBareJid("example.com"), null);
  });
});
