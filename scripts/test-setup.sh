#!/usr/bin/env bash
# Prepare a fresh Debian machine for the test suite (what README's test command runs first):
# Debian packages the tests need (systemd-analyze, a PostgreSQL server, Chromium and its
# driver) installed only when missing, then the virtual environment .venv with every extra.
# Servers are not started here: the tests start their own on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v systemd-analyze >/dev/null || need+=(systemd)
{ command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if ((${#need[@]})); then
    echo "test-setup: installing Debian packages: ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test,aegean,postgres,dask,web,online,plot]'
