#!/usr/bin/env bash
# The load generator of `make bench`: Debian's wrk. Without it (no root, no apt), the benchmarks fall back to
# benchmarks/httpload.py, an async httpx load generator in its own process, and say so in their results.
set -u
if command -v wrk >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "bench: apt-get not found; using the httpx load generator instead of wrk" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "bench: not root and no passwordless sudo; using the httpx load generator instead of wrk" >&2
        exit 0
    fi
fi
echo "bench: installing Debian's wrk" >&2
if ! ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null); then
    echo "bench: could not install wrk; using the httpx load generator instead" >&2
fi
exit 0
