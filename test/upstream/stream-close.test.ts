import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { STREAM_OPEN, afterChunk, streamClosed } from "../../src/upstream/stream-close.js";

const CLOSED_AT_END = /<\/stream:stream>[ \t\r\n]*$/;

/** A seeded generator (mulberry32): the same cases every run. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Pieces that make near misses likely: parts of the tag, whitespace, other markup. */
const PIECES = ["</stream:stream>", "</stream:", "stream>", "</", "<", ">", "</stream", ":stream>", " ", "\n", "\r\n", "\t", "<message/>", "s", "m>", "</stream:stream><", "x", "é"];

describe("closing-tag tracking", () => {
  it("agrees with a regular expression over the whole stream, for 20,000 random streams cut into random chunks", () => {
    const rand = random(7);
    for (let n = 0; n < 20_000; n++) {
      const text = Array.from({ length: 1 + Math.floor(rand() * 8) }, () => PIECES[Math.floor(rand() * PIECES.length)]).join("");
      const bytes = Buffer.from(text);
      let state = STREAM_OPEN;
      for (let at = 0; at < bytes.length; ) {
        const size = 1 + Math.floor(rand() * Math.min(20, bytes.length - at));
        state = afterChunk(state, bytes.subarray(at, at + size));
        at += size;
      }
      assert.equal(streamClosed(state), CLOSED_AT_END.test(text), JSON.stringify(text));
    }
  });

  it("looks only at the end of a large chunk", () => {
    const big = Buffer.alloc(1 << 20, "a");
    assert.equal(streamClosed(afterChunk(STREAM_OPEN, Buffer.concat([big, Buffer.from("</stream:stream>")]))), true);
    assert.equal(streamClosed(afterChunk(afterChunk(STREAM_OPEN, Buffer.from("</stream:stream>")), big)), false);
    assert.equal(streamClosed(afterChunk(afterChunk(STREAM_OPEN, Buffer.from("</stream:stre")), Buffer.from("am>"))), true);
    assert.equal(streamClosed(afterChunk(STREAM_OPEN, Buffer.alloc(0))), false);
  });
});
