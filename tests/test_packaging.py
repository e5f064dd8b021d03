"""
What pip installs: the twistd plugin must be found from the installed
wheel, not only from a source checkout.
"""

from importlib.metadata import distribution
from pathlib import Path

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.plugins import wsecho_plugin

import wsecho

CHECKOUT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = (CHECKOUT / "src", CHECKOUT / "twisted")


def test_wheel_installs_the_dropin() -> None:
    """
    The installed distribution lists twisted/plugins/wsecho_plugin.py and
    the package's index page with its script, style sheet and icon.
    """
    files = {str(f) for f in distribution("wsecho").files or ()}
    assert "twisted/plugins/wsecho_plugin.py" in files
    for page in (
        "index.html",
        "console.js",
        "bytes.js",
        "chart.js",
        "console.css",
        "favicon.svg",
    ):
        assert f"wsecho/http/static/{page}" in files
    assert "wsecho/py.typed" in files
    assert not any(
        f.startswith("twisted/plugins/__init__") or f == "twisted/__init__.py"
        for f in files
    )


def test_plugin_found_from_the_installed_package() -> None:
    """
    getPlugins(IServiceMaker) finds the wsecho service maker, loaded from
    the installed files rather than the checkout.
    """
    [maker] = [p for p in getPlugins(IServiceMaker) if p.tapname == "wsecho"]
    assert maker.module == "wsecho.daemon.tap"
    assert hasattr(maker.options(), "parseOptions")
    for module in (wsecho, wsecho_plugin):
        where = Path(module.__file__).resolve().parents
        assert not any(d in where for d in SOURCE_DIRS), module.__file__
