/**
 * A minimal XMPP node for relay and memory figures, run as its own process so
 * its cost is never counted against a contender: it opens each stream with
 * features (PLAIN), answers any <auth/> with <success/>, answers the stream
 * restart, and from then on echoes every byte back.
 * Run: node bench/side-by-side/echo-node.js  (prints its port)
 */
import net from "node:net";

const HEADER = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='echo' from='bench.test' version='1.0'>";
const FEATURES = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>";
const SUCCESS = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>";

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  socket.on("error", () => {});
  // Until the echo: find the stream header, the <auth>, the restarted header, as plain text (no parser).
  let text = "";
  let step: "header" | "auth" | "restart" = "header";
  const dialogue = (chunk: Buffer): void => {
    text += chunk.toString("latin1");
    for (;;) {
      if (text.includes("</stream:stream>")) return void socket.end("</stream:stream>");
      const end = step === "auth" ? /<auth[^>]*?(\/>|>[^<]*<\/auth>)/.exec(text) : /<stream:stream[^>]*>/.exec(text);
      if (end === null) return;
      text = text.slice(end.index + end[0].length);
      if (step === "header") (socket.write(HEADER + FEATURES), (step = "auth"));
      else if (step === "auth") (socket.write(SUCCESS), (step = "restart"));
      else {
        socket.write(HEADER + "<stream:features/>");
        socket.off("data", dialogue);
        socket.on("data", (d: Buffer) => void socket.write(d));
        if (text.length > 0) socket.write(text, "latin1");
        return;
      }
    }
  };
  socket.on("data", dialogue);
});
server.listen(0, "127.0.0.1", () => console.log((server.address() as net.AddressInfo).port));
