"""picows' echo server."""

import asyncio
import sys

from picows import (
    WSListener,
    WSMsgType,
    WSTransport,
    ws_create_server,
)


class Echo(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            transport.send(frame.msg_type, frame.get_payload_as_bytes())


async def main() -> None:
    server = await ws_create_server(
        lambda request: Echo(), "127.0.0.1", int(sys.argv[1])
    )
    await server.serve_forever()


asyncio.run(main())
