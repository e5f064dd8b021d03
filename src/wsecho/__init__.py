"""
wsecho: a WebSocket echo daemon for twistd, built on Twisted and Autobahn.
"""

__version__ = "0.1.0"
