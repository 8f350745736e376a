"""dnslib's own threaded DNSServer answering the bench zone's static A: what a Python user would
write without gslb. Usage: python bench/dnslib_server.py PORT (prints "ready" when listening)."""

import sys
import time

from dnslib import QTYPE, RCODE, RR, A, DNSLabel
from dnslib.server import BaseResolver, DNSLogger, DNSServer

NAME = DNSLabel("static.bench.example.")


class StaticResolver(BaseResolver):
    def resolve(self, request, handler):
        reply = request.reply()
        if request.q.qname == NAME and request.q.qtype == QTYPE.A:
            reply.add_answer(RR(NAME, QTYPE.A, ttl=300, rdata=A("192.0.2.10")))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


if __name__ == "__main__":
    quiet = DNSLogger("-request,-reply,-truncated,-error", prefix=False)
    server = DNSServer(StaticResolver(), port=int(sys.argv[1]), address="127.0.0.1", logger=quiet)
    server.start_thread()
    print("ready", flush=True)
    while server.isAlive():
        time.sleep(1)
