"""A foreign SMTP server for outbound tests, built on aiosmtpd.

Listens on ADDR:PORT, stores each accepted message as N.eml (the exact
octets after un-dot-stuffing) plus N.json (envelope, TLS use), and can
misbehave on purpose:
  --tempfail N          answer 451 to the first N DATA transactions
  --reject ADDR         answer 550 5.1.1 at RCPT for this recipient (repeatable)
  --size-limit N        advertise SIZE N (and refuse larger messages)
  --tls-cert/--tls-key  offer STARTTLS with this certificate
Prints READY when it accepts connections.
"""
import argparse
import asyncio
import json
import os
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, args):
        self.args = args
        self.count = 0
        self.tempfails = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.args.reject:
            return "550 5.1.1 <%s> no such user here" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.tempfails < self.args.tempfail:
            self.tempfails += 1
            return "451 4.3.0 please try again later"
        self.count += 1
        base = os.path.join(self.args.dir, "%06d" % self.count)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "mail_options": envelope.mail_options,
            "tls": session.ssl is not None,
            "helo": session.host_name,
            "peer": list(session.peer),
        }
        with open(base + ".json", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 2.0.0 queued as %d" % self.count


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--addr", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--tempfail", type=int, default=0)
    p.add_argument("--reject", action="append", default=[])
    p.add_argument("--size-limit", type=int, default=10 * 1024 * 1024)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    args = p.parse_args()
    args.reject = [a.lower() for a in args.reject]
    os.makedirs(args.dir, exist_ok=True)
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    handler = Sink(args)
    ctl = Controller(
        handler,
        hostname=args.addr,
        port=args.port,
        tls_context=tls,
        require_starttls=False,
        decode_data=False,
        server_hostname="sink.test",
        data_size_limit=args.size_limit,
    )
    ctl.start()
    print("READY", flush=True)
    try:
        sys.stdin.read()
    finally:
        ctl.stop()


if __name__ == "__main__":
    main()
