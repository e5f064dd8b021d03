"""
The daemon: twistd's options and service, processes, TLS, logs and workers.
"""
