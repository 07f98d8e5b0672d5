"""Shared by the benchmark scripts: a loopback sink server and small helpers.

The sink runs in its own process so that its work never competes with the measured
process for the GIL. It answers every POST at once with a fixed success body, and a GET
with what it received so far: ``{"requests", "messages", "conversations"}``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

SINK = textwrap.dedent(
    r"""
    import asyncio, json, sys
    BODY = b'{"success":true,"conversationId":"c","messages":[],"id":"x"}'
    OK = (b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n'
          % len(BODY)) + BODY
    MARK = b'"externalConversationId":"'
    seen = {"requests": 0, "messages": 0}
    convs = set()
    def count(body):
        seen["requests"] += 1
        seen["messages"] += body.count(b'"externalMessageId"')
        at = body.find(MARK)
        if at >= 0:
            at += len(MARK)
            convs.add(body[at:body.find(b'"', at)])
    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b'\r\n\r\n')
                length, chunked = 0, False
                for line in head.split(b'\r\n'):
                    low = line.lower()
                    if low.startswith(b'content-length:'):
                        length = int(line[15:])
                    elif low.startswith(b'transfer-encoding:') and b'chunked' in low:
                        chunked = True
                body = b''
                if chunked:
                    while True:
                        size = int((await reader.readuntil(b'\r\n')).strip() or b'0', 16)
                        body += (await reader.readexactly(size + 2))[:-2]
                        if size == 0:
                            break
                elif length:
                    body = await reader.readexactly(length)
                if head.startswith(b'GET'):  # what arrived so far
                    data = json.dumps({**seen, "conversations": len(convs)}).encode()
                    writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n' % len(data)
                                 + data)
                else:
                    count(body)
                    writer.write(OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
    async def main():
        server = await asyncio.start_server(handle, '127.0.0.1', int(sys.argv[1]), backlog=512)
        print('ready', flush=True)
        async with server:
            await server.serve_forever()
    asyncio.run(main())
    """
)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink(source: str = SINK) -> tuple[subprocess.Popen[str], str]:
    """Start a server script (taking its port as argv[1], printing a line when ready)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", source, str(port)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "ready"
    return proc, f"http://127.0.0.1:{port}"


def available(module: str) -> bool:
    """True when ``module`` imports in a fresh interpreter (peers are optional)."""
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0
