"""
One WebSocket echo connection and the state its connections share.
"""
