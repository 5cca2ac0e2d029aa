#!/usr/bin/env python3
"""A keep-alive HTTP/1.1 server on 127.0.0.1 that answers every request after a fixed delay
(default 20 ms): the slow target of bench/open-compare.sh. Prints its port, then serves until
killed.

    python3 bench/delay-server.py [DELAY_MS]
"""
import asyncio
import sys

DELAY = (float(sys.argv[1]) if len(sys.argv) > 1 else 20.0) / 1000.0
BODY = b'{"status":"ok","service":"delay"}'
ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)


async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            await asyncio.sleep(DELAY)
            writer.write(ANSWER)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
