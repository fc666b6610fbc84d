"""The trivial upstream in Python: the fallback when nginx is not installed (smoke mode).

    python bench/pyupstream.py PORT

Any path answers a small text body; `/download/1mib.bin` answers 1 MiB and `/download/1gib.bin` 1 GiB
of zeros, like the nginx upstream of bench/run.py. HTTP/1.1 keep-alive, GET only.
"""

from __future__ import annotations

import asyncio
import sys

SMALL = b"hello from the upstream\n"
CHUNK = b"\0" * (256 * 1024)
SIZES = {b"/download/1mib.bin": 1 << 20, b"/download/64mib.bin": 64 << 20, b"/download/1gib.bin": 1 << 30}


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].split(b"?", 1)[0]
            size = SIZES.get(path)
            if size is None:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(SMALL), SMALL))
                continue
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Content-Length: %d\r\n\r\n" % size)
            for _ in range(size // len(CHUNK)):
                writer.write(CHUNK)
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
