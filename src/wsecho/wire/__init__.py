"""
The WebSocket wire format, with no I/O: frames and permessage-deflate.
"""
