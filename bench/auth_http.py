#!/usr/bin/env python3
"""A trivial, fast auth_http responder for nginx's mail proxy (benchmark only).

    python3 bench/auth_http.py --port P --upstream-port U

Every request is answered "Auth-Status: OK" with Auth-Server 127.0.0.1 and
Auth-Port U: nginx then logs in to the upstream with the client's own
credentials. asyncio protocol, no HTTP parsing beyond the end of the headers,
so nginx is measured at its best. Prints READY once listening.
"""

import argparse
import asyncio
import signal


class Responder(asyncio.Protocol):
    def __init__(self, reply: bytes):
        self.reply = reply
        self.buf = b""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        if b"\r\n\r\n" in self.buf:
            self.transport.write(self.reply)
            self.transport.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream-port", type=int, required=True)
    opts = ap.parse_args()
    reply = (
        "HTTP/1.0 200 OK\r\n"
        "Auth-Status: OK\r\n"
        "Auth-Server: 127.0.0.1\r\n"
        f"Auth-Port: {opts.upstream_port}\r\n"
        "Content-Length: 0\r\n"
        "\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Responder(reply), "127.0.0.1", opts.port,
                                      backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
