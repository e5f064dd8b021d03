#!/usr/bin/env bash
# Make a Python 2.7 virtualenv holding the Autobahn TestSuite (wstest), with
# no Docker: the TestSuite is a Python 2 program, and autobahntestsuite
# 25.10.1 pins every dependency to a version that still installs on 2.7.
#
#   conformance/install-wstest.sh [DIR]     (default: .ats)
#
# Python 2.7 is taken from $WSTEST_PYTHON, else python2.7 on PATH, else
# pyenv's 2.7 (pyenv install 2.7.18 makes one).
set -euo pipefail
dest=${1:-.ats}
if [ -x "$dest/bin/wstest" ]; then
    exit 0
fi

is_py27() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' >/dev/null 2>&1; }
py2=${WSTEST_PYTHON:-}
if [ -z "$py2" ]; then
    for candidate in python2.7 "$HOME"/.pyenv/versions/2.7*/bin/python2.7; do
        if is_py27 "$candidate"; then
            py2=$candidate
            break
        fi
    done
fi
if [ -z "$py2" ] || ! is_py27 "$py2"; then
    echo "install-wstest: no Python 2.7 found; install one (pyenv install 2.7.18) or set WSTEST_PYTHON" >&2
    exit 1
fi

tools=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$tools" "$log"' EXIT
quietly() {
    # Old pip on 2.7 warns about every index it cannot read; show its
    # output only when it fails.
    "$@" >"$log" 2>&1 || { cat "$log" >&2; echo "install-wstest: failed: $*" >&2; exit 1; }
}
echo "install-wstest: Python 2.7 is $py2; installing autobahntestsuite 25.10.1 in $dest"
# virtualenv 20.22 dropped Python 2 environments.
quietly "$py2" -m pip install --disable-pip-version-check --target "$tools" 'virtualenv<20.22'
quietly env PYTHONPATH="$tools" "$py2" -m virtualenv "$dest"
quietly "$dest/bin/pip" install --disable-pip-version-check autobahntestsuite==25.10.1
"$dest/bin/wstest" --autobahnversion
