#!/usr/bin/env bash
# Installs the Debian 12 packages gtrace needs to build, run its example and
# run its whole test suite.  Idempotent: when every package is already
# installed it changes nothing and does not touch the network, so the demo
# and test scripts can call it on every run.
#
#   scripts/deps.sh            install what is missing
#   scripts/deps.sh --update   always run apt-get update first (CI does)
#
# Keep this list the one place that names packages: .ci/run, demo.sh and
# test.sh all go through it.
set -euo pipefail

packages=(
        build-essential cmake pkg-config     # toolchain (gcc, make, binutils: nm)
        check                                # unit test framework
        libuv1-dev libjansson-dev            # daemon and client
        libsystemd-dev systemd               # sd_notify, systemd-analyze, systemd-socket-activate
        clang libclang-rt-14-dev             # sanitizer/fuzz builds (libFuzzer)
        util-linux                           # setarch (TSan without ASLR), flock
        procps                               # ps/pgrep used by integration tests
)

force_update=0
for arg in "$@"; do
        case "$arg" in
        --update) force_update=1 ;;
        *)
                echo "usage: $0 [--update]" >&2
                exit 2
                ;;
        esac
done

missing=()
for p in "${packages[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
                missing+=("$p")
        fi
done

if [ "${#missing[@]}" -eq 0 ] && [ "$force_update" -eq 0 ]; then
        exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
        echo "deps: missing packages: ${missing[*]}" >&2
        echo "deps: run as root (or: sudo apt-get install ${missing[*]})" >&2
        exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# apt-get update can fail on a transient mirror hiccup: retry a few times.
for attempt in 1 2 3; do
        if apt-get update -q; then
                break
        fi
        if [ "$attempt" -eq 3 ]; then
                echo "deps: apt-get update failed" >&2
                exit 1
        fi
        echo "deps: apt-get update failed, retrying ($attempt)" >&2
        sleep 5
done
apt-get install -y -q --no-install-recommends "${packages[@]}"
