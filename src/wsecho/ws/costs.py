"""
What a connection costs the process beyond the bytes it sends: the memory
budget's fixed costs (see L{wsecho.ws.budget}).

Measured with C{python bench/fixed_costs.py --count 2000}: 2,000 connections
of a kind opened against a real daemon on loopback (budget off), the growth
of its VmRSS divided by 2,000, CPython 3.11, OpenSSL 3, zlib 1.2 on glibc
x86_64. Rounded up: the budget may count a little more than is resident,
never much less.
"""

KiB = 1024

# A silent TCP connection on a plain port: the socket, Twisted's transport
# and the HTTP channel (1.6 KiB measured).
TCP = 2 * KiB
# What an ssl: listener adds before the TLS handshake is done: OpenSSL's
# SSL object, its BIOs and handshake buffers (47.5 KiB a connection in all
# measured, less the TCP connection's).
TLS_HANDSHAKE = 46 * KiB
# What TLS keeps once the handshake is done (an idle wss:// WebSocket,
# 34.4 KiB, less a plain one, 9.7 KiB): the rest of TLS_HANDSHAKE is given
# back when the connection becomes a WebSocket.
TLS_SESSION = 25 * KiB
# An idle WebSocket over the TCP connection: Autobahn's protocol, the echo's
# parts (9.7 KiB measured, less the TCP connection's).
WEBSOCKET = 8 * KiB
# permessage-deflate's zlib state, a compressor and a decompressor (66.4
# KiB for an idle deflate WebSocket after one message, less a plain one's
# 9.7): counted when the extension is agreed, before zlib makes it.
DEFLATE = 57 * KiB
# What each read kept in a buffer costs on top of its bytes (a bytes
# object's header and its place in a list, in pymalloc's 16-byte steps:
# 1-byte reads of a dripped frame cost about 60 bytes of RSS each).
READ = 64
