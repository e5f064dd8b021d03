"""
HTTP: the channel, the site, its resources and pages, and who may connect.
"""
