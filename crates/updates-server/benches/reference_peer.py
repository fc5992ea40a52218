"""The Python reference peer of tahoe-updates-server, for the fan-out bench only.

`cargo bench -p updates-server --bench fanout -- --python-peer-compare` runs the same fan-out
against the release binary and against this peer, one after the other in one run, and prints
them side by side. It is what a Tahoe developer would write first in Tahoe's own stack (Twisted,
autobahn and pyOpenSSL, all in Tahoe-LAFS's dependencies, so the project's .venv has them): the
v1 protocol's subscribe, status with seqnums and update, TLS with the bench's certificate, the
swissnum checked in constant time, and changes found by reading the subscribed slots' share
headers every 50 ms, as the Python peer of the first fan-out measurements did. Each update is
framed once and sent to every subscriber (`prepareMessage` / `sendPreparedMessage`, autobahn's
own broadcast path).

It is not a product and does nothing the bench does not need: no proofs, no limits, no
unsubscribe.
"""

import argparse
import base64
import hmac
import json
import os
import re
import struct
import sys

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import reactor, ssl, task

VERSION_FIELD = "tahoe-mutable-notification-version"
PATH = "/v1/mutable_updates"
# Tahoe's mutable container: the share data starts at byte 468; its first byte is the version
# and the next eight the seqnum, big-endian.
MAGIC_PREFIX = b"Tahoe mutable container v"
DATA_OFFSET = 468
HEADER_LEN = DATA_OFFSET + 1 + 8
STORAGE_INDEX = re.compile(r"^[a-z2-7]{26}$")


def read_seqnum(storage, si):
    """The highest seqnum among this server's shares of `si`, or None without a share."""
    folder = os.path.join(storage, "shares", si[:2], si)
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    best = None
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(os.path.join(folder, name), "rb") as share:
                header = share.read(HEADER_LEN)
        except OSError:
            continue
        if len(header) < HEADER_LEN or not header.startswith(MAGIC_PREFIX):
            continue
        (seqnum,) = struct.unpack(">Q", header[DATA_OFFSET + 1 : HEADER_LEN])
        best = seqnum if best is None else max(best, seqnum)
    return best


class Hub:
    def __init__(self, storage):
        self.storage = storage
        self.subscribers = {}  # si -> set of protocols
        self.seqnums = {}  # si -> last seqnum announced

    def subscribe(self, protocol, storage_indexes):
        status, seqnums = {}, {}
        for si in storage_indexes:
            if not isinstance(si, str) or not STORAGE_INDEX.match(si):
                status[str(si)] = "malformed-storage-index: not a base32 storage index"
                continue
            seqnum = read_seqnum(self.storage, si)
            if seqnum is None:
                status[si] = "not-found: this server holds no share of that slot"
                continue
            self.subscribers.setdefault(si, set()).add(protocol)
            self.seqnums.setdefault(si, seqnum)
            status[si] = True
            seqnums[si] = seqnum
        return {VERSION_FIELD: 1, "status": status, "seqnum": seqnums}

    def leave(self, protocol):
        for si, protocols in list(self.subscribers.items()):
            protocols.discard(protocol)
            if not protocols:
                del self.subscribers[si]

    def poll(self):
        for si, protocols in list(self.subscribers.items()):
            seqnum = read_seqnum(self.storage, si)
            if seqnum is None or seqnum == self.seqnums.get(si):
                continue
            self.seqnums[si] = seqnum
            payload = json.dumps({VERSION_FIELD: 1, "update": si, "seqnum": seqnum}).encode()
            prepared = None
            for protocol in list(protocols):
                if prepared is None:
                    prepared = protocol.factory.prepareMessage(payload)
                protocol.sendPreparedMessage(prepared)


class UpdatesProtocol(WebSocketServerProtocol):
    def onConnect(self, request):
        if request.path != PATH:
            raise ConnectionDeny(404, "no such endpoint")
        presented = request.headers.get("authorization", "")
        if not hmac.compare_digest(presented.encode(), self.factory.expected_authorization):
            raise ConnectionDeny(401, "Unauthorized")
        return None

    def onMessage(self, payload, is_binary):
        try:
            message = json.loads(payload)
        except ValueError:
            self.sendClose(1007, "not JSON")
            return
        if isinstance(message, dict) and isinstance(message.get("subscribe"), list):
            reply = self.factory.hub.subscribe(self, message["subscribe"])
            self.sendMessage(json.dumps(reply).encode())

    def onClose(self, was_clean, code, reason):
        self.factory.hub.leave(self)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage-dir", required=True)
    parser.add_argument("--tls-cert", required=True)
    parser.add_argument("--tls-key", required=True)
    parser.add_argument("--swissnum-file", required=True)
    parser.add_argument("--port-file", required=True, help="where the listening port is written")
    parser.add_argument("--poll-interval", type=float, default=0.05)
    args = parser.parse_args()

    with open(args.swissnum_file, "rb") as f:
        swissnum = f.read().strip()
    factory = WebSocketServerFactory()
    factory.protocol = UpdatesProtocol
    factory.setProtocolOptions(autoPingInterval=None, utf8validateIncoming=False)
    factory.expected_authorization = b"Tahoe-LAFS " + base64.b64encode(swissnum)
    factory.hub = Hub(args.storage_dir)

    context = ssl.DefaultOpenSSLContextFactory(args.tls_key, args.tls_cert)
    port = reactor.listenSSL(0, factory, context, interface="127.0.0.1", backlog=1024)
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(port.getHost().port))
    os.replace(args.port_file + ".tmp", args.port_file)

    task.LoopingCall(factory.hub.poll).start(args.poll_interval, now=False)
    # The bench closes stdin when it is done with the peer.
    reactor.callInThread(lambda: (sys.stdin.read(), reactor.callFromThread(reactor.stop)))
    reactor.run()


if __name__ == "__main__":
    main()
