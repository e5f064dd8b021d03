"""The websockets library's echo server."""

import asyncio
import sys

from websockets.asyncio.server import serve


async def echo(websocket) -> None:
    async for message in websocket:
        await websocket.send(message)


async def main() -> None:
    # Its default is deflate; --deflate (S7) keeps it.
    compression = "deflate" if "--deflate" in sys.argv else None
    async with serve(
        echo, "127.0.0.1", int(sys.argv[1]), compression=compression
    ) as server:
        await server.serve_forever()


asyncio.run(main())
