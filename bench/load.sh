#!/usr/bin/env bash
# load.sh — the long form of the load and fault harness (test/chaos):
#
#   1. throughput: BENCH messages (one 20 KB attachment, one external
#      recipient) over SESSIONS sessions to sealgate, then the same to a
#      private Postfix relaying to the same kind of sink; prints msgs/s,
#      p50/p99 of the 250 reply and the ratios (targets of issue 16:
#      sealgate ≥ 0.9× Postfix accepted, ≥ 0.7× end to end, p99 < 100 ms);
#   2. chaos: MESSAGES mixed messages while the gateway is killed (kill -9)
#      and the smarthost, the object store (versitygw), the disk (a tmpfs
#      data directory) and the database (locked by another process) fail in
#      turn; reconciles every message: nothing missing, nothing leaked.
#
#   bench/load.sh                          50,000 chaos + 20,000 bench messages
#   MESSAGES=5000 BENCH=2000 bench/load.sh
#   bench/load.sh -kills 20 -seed 42       any flag of `go run ./test/chaos -h`
#
# Needs: go; root (tmpfs for the disk-full fault; otherwise it is skipped);
# versitygw (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)
# for the S3 store and its outage; postfix (apt-get install postfix) for the
# comparison — the private instance has its own configuration, queue and
# port on loopback and is stopped at the end; the system's Postfix is not
# touched. Exit status: 0 nothing lost or leaked, 1 otherwise, 2 usage.
set -euo pipefail
cd "$(dirname "$0")/.."

messages=${MESSAGES:-50000}
bench=${BENCH:-20000}
sessions=${SESSIONS:-10}

gobin="$(go env GOPATH)/bin"
export PATH="$gobin:$PATH"
if ! command -v versitygw >/dev/null 2>&1; then
	echo "load.sh: versitygw not found; installing it (go install)" >&2
	GOFLAGS= go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi
if ! command -v postfix >/dev/null 2>&1; then
	echo "load.sh: postfix is not installed (apt-get install postfix): the comparison will be skipped" >&2
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "load.sh: not root: the disk-full fault (tmpfs) and the Postfix comparison need root" >&2
fi

exec go run ./test/chaos \
	-messages "$messages" -bench "$bench" -sessions "$sessions" \
	-kills 10 -smarthost-outages 2 -store-outages 2 -disk-full 2 -db-locks 4 \
	-tmpfs-mib 4096 -drain 10m -log-level warn "$@"
