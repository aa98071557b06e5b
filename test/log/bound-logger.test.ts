import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { BoundLogger, createLogger, type LogLevel } from "../../src/log.js";

/** A real pino logger writing JSON lines into an array, and a connection that counts how often its bindings are asked for. */
function setup(level: LogLevel) {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(...chunk.toString().trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)), done()) });
  const connection = { asked: 0, logBindings: () => (connection.asked++, { conn: "c1", client: "192.0.2.7:5000", listener: "c2s" }) };
  return { lines, connection, log: new BoundLogger(createLogger(level, sink), connection) };
}

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe("BoundLogger", () => {
  it("does no work and writes nothing for lines below the level", async () => {
    const { lines, connection, log } = setup("warn");
    log.info({ jid: "alice@lb.test" }, "forwarded");
    log.debug("client socket error");
    await settle();
    assert.equal(connection.asked, 0);
    assert.deepEqual(lines, []);
  });

  it("logs enabled lines with the connection's bindings, and keeps the redaction", async () => {
    const { lines, log } = setup("info");
    log.warn({ node: "n1", password: "secret" }, "node dial failed");
    log.info("the client closed its side before login");
    log.error(new Error("boom"), "handoff failed");
    await settle();
    assert.equal(lines.length, 3);
    const [first, second, third] = lines as [Record<string, unknown>, Record<string, unknown>, Record<string, unknown>];
    assert.deepEqual([first.conn, first.client, first.listener, first.node, first.password, first.level, first.msg], ["c1", "192.0.2.7:5000", "c2s", "n1", "[redacted]", 40, "node dial failed"]);
    assert.deepEqual([second.conn, second.level, second.msg], ["c1", 30, "the client closed its side before login"]);
    assert.deepEqual([third.conn, (third.err as { message: string }).message, third.msg], ["c1", "boom", "handoff failed"]);
  });
});
