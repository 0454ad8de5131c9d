#!/bin/sh
# No-op re-run bench on lab hosts: prints, per size, the first (converging) run, the median and
# best of three no-op re-runs (wall seconds, whole run incl. SSH handshakes), and round trips per
# host. Usage: bench/noop.sh [3 10 30 lo30]   (as root; boots one lab per size, removes it after;
# loN = N loopback sshd processes instead of lab hosts)
# Built with the dev profile (the work is SSH- and host-bound, not CPU-bound in ezk).
set -e
cd "$(dirname "$0")/.."
exec cargo bench --profile dev --bench noop -- "$@"
