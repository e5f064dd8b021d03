"""
C{python -m wsecho.client}: the same as C{wsecho-client}.
"""

from .cli import main

main()
