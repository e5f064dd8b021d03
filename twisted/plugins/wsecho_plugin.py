# A twistd dropin: it names the service and nothing else. Keep imports out of
# here; a failing import makes twistd silently forget the "wsecho" command.
from twisted.application.service import ServiceMaker

wsecho = ServiceMaker(
    "wsecho",
    "wsecho.daemon.tap",
    "A WebSocket echo server (RFC 6455, permessage-deflate).",
    "wsecho",
)
