"""
C{python -m wsecho.client}: the same as C{wsecho-client}.
"""

from wsecho.client.cli import main

main()
