"""
--workers: the parent's pool, a worker's entry point, and the pipes between them.
"""
