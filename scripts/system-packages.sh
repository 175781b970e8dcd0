#!/usr/bin/env bash
# The Debian packages that the tests drive, installed when they are missing.
#
# `make test` runs this before pytest, and so does CI (through `make test`):
#   curl                the end-to-end tests paste the docs' curl examples
#   chromium            the browser tests' headless Chromium (/usr/bin/chromium)
#   chromium-driver     ... and its driver (/usr/bin/chromedriver); selenium
#                       downloads nothing
#   postgresql          the PostgreSQL index's tests start a private server from
#                       its binaries (/usr/lib/postgresql/<version>/bin)
#   nginx               tests/test_prefix.py and the browser tests put it
#                       (/usr/sbin/nginx, run unprivileged) in front of uvicorn,
#                       under a path prefix; Debian 12's nginx-light is only a
#                       transitional package for it
# Redis and everything else come from pip wheels (pyproject.toml).
#
# As root, missing packages are installed with apt-get; otherwise this says
# which are missing and how to install them, and exits 1. The packages are
# looked for where Debian puts them, under ASGILOOK_SYSTEM_ROOT if it is set
# (tests/test_system_packages.py looks in an empty folder).
set -euo pipefail

root="${ASGILOOK_SYSTEM_ROOT:-}"
missing=()
[ -x "$root/usr/bin/curl" ] || missing+=(curl)
[ -x "$root/usr/bin/chromium" ] || missing+=(chromium)
[ -x "$root/usr/bin/chromedriver" ] || missing+=(chromium-driver)
compgen -G "$root/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
[ -x "$root/usr/sbin/nginx" ] || missing+=(nginx)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "Installing the Debian packages the tests need: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
    echo "The tests need these Debian packages: ${missing[*]}." \
        "Install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
