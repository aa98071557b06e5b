#!/usr/bin/python3
"""A second real XMPP client for the end-to-end tests, on Debian's slixmpp 1.8.3.

    /usr/bin/python3 test/clients/slixmpp_client.py --jid user@lb.test --password pw \
        --host 127.0.0.1 --port 5222 --ca examples/tls/ca.pem [--timeout 20] [--mech PLAIN] [-v]

Connects to host:port (a balancer or a node), does STARTTLS (certificate checked
against --ca for the JID's domain), SASL, binds, asks disco#info of the domain for
the server identity's name (the test nodes' id), disconnects, and prints one JSON
line on stdout:

    {"ok": true, "jid": "...", "node": "n1", "redirects": ["127.0.2.1:5222"], "address": ["127.0.2.1", 5222]}
    {"ok": false, "error": "...", "redirects": [...]}          (exit status 1)

<see-other-host/> is followed, also when it comes after STARTTLS or after <auth/>.
Logs (slixmpp's and ours) go to stderr with -v.
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

from slixmpp import ClientXMPP
from slixmpp.xmlstream import XMLStream

log = logging.getLogger("slixmpp_client")


class Client(ClientXMPP):
    def __init__(self, jid, password, address, ca, mech=None):
        super().__init__(jid, password, sasl_mech=mech)
        self.address = address
        self.ca_certs = ca
        self.use_ipv6 = False
        self.whitespace_keepalive = False
        self.redirects = []
        self.result = asyncio.get_running_loop().create_future()
        self._redirecting = False
        self.register_plugin("xep_0030")
        self.add_event_handler("stream_error", self._on_stream_error)
        self.add_event_handler("connected", self._on_connected)
        self.add_event_handler("connection_failed", lambda e: self._fail(f"connection to {self.address} failed: {e}"))
        self.add_event_handler("ssl_invalid_chain", lambda e: self._fail(f"TLS certificate rejected: {e}"))
        self.add_event_handler("failed_all_auth", lambda _: self._fail("authentication failed"))
        self.add_event_handler("disconnected", self._on_disconnected)
        self.add_event_handler("session_start", self._on_session_start)

    # slixmpp's see-other-host handler (BaseXMPP._handle_stream_error) parses the
    # target into self.address, then reconnect() calls connect() with no address,
    # which ClientXMPP turns into (JID domain, 5222) plus SRV/A lookups. Instead,
    # always dial self.address: the initial one, or the redirect's.
    def connect(self, address=None, use_ssl=False, force_starttls=True, disable_starttls=False):
        if address is not None:
            self.address = address
        self.dns_service = None
        XMLStream.connect(self, self.address[0], self.address[1], use_ssl=False, force_starttls=True, disable_starttls=False)
        # The redirect handler sets default_domain to the target host; TLS must
        # still check the certificate (and send SNI) for the XMPP domain.
        self.default_domain = self.boundjid.domain

    # No DNS at all: lb.test does not resolve, and the address is already known.
    async def _pick_dns_answer(self, domain, port=None):
        return (self.boundjid.domain, self.address[0], self.address[1])

    def _on_connected(self, _):
        log.info("connected to %s", self.address)
        self._redirecting = False

    def _on_stream_error(self, error):
        # Runs inside BaseXMPP._handle_stream_error, before it reconnects.
        if error["condition"] == "see-other-host" and error["see_other_host"]:
            self.redirects.append(error["see_other_host"])
            if len(self.redirects) > self.max_redirects:
                self._fail(f"too many redirects: {self.redirects}")
            else:
                self._redirecting = True
            return
        self._fail(f"stream error {error['condition']}: {error['text']}")

    def _on_disconnected(self, reason):
        if not self._redirecting:
            self._fail(f"disconnected: {reason}")

    async def _on_session_start(self, _):
        try:
            domain = self.boundjid.domain
            iq = await self["xep_0030"].get_info(jid=domain, local=False, cached=False, timeout=10)
            names = [ident[3] for ident in iq["disco_info"]["identities"] if ident[0] == "server"]
            if not names or names[0] is None:
                raise ValueError(f"no server identity name in disco#info of {domain}")
            if not self.result.done():
                self.result.set_result({
                    "ok": True,
                    "jid": str(self.boundjid.full),
                    "node": names[0],
                    "redirects": self.redirects,
                    "address": [self.address[0], self.address[1]],
                })
        except Exception as e:  # noqa: BLE001 - everything becomes a JSON failure
            self._fail(f"disco#info failed: {e!r}")

    def _fail(self, message):
        log.info("failing: %s", message)
        if not self.result.done():
            self.result.set_exception(RuntimeError(message))


def emit(obj, code):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
    # Skip interpreter teardown: pending slixmpp tasks must not print or hang.
    os._exit(code)


async def run(args):
    xmpp = Client(args.jid, args.password, (args.host, args.port), args.ca, args.mech)
    xmpp.connect()
    try:
        result = await asyncio.wait_for(asyncio.shield(xmpp.result), args.timeout)
    except asyncio.TimeoutError:
        return {"ok": False, "error": f"timed out after {args.timeout}s", "redirects": xmpp.redirects}
    except Exception as e:  # noqa: BLE001
        return {"ok": False, "error": str(e), "redirects": xmpp.redirects}
    xmpp._redirecting = True  # our own disconnect is not a failure
    try:
        await asyncio.wait_for(xmpp.disconnect(wait=1), 3)
    except Exception:  # noqa: BLE001 - the result is in hand already
        pass
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5222)
    p.add_argument("--ca", required=True, help="CA bundle (PEM) to verify the server certificate")
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--mech", default=None, help="force one SASL mechanism, e.g. PLAIN")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.CRITICAL, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Backstop in case the event loop itself wedges.
    signal.signal(signal.SIGALRM, lambda *_: emit({"ok": False, "error": "hard timeout"}, 1))
    signal.alarm(int(args.timeout) + 5)
    try:
        result = asyncio.run(run(args))
    except Exception as e:  # noqa: BLE001
        result = {"ok": False, "error": repr(e)}
    emit(result, 0 if result.get("ok") else 1)


if __name__ == "__main__":
    main()
