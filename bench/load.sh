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
# bench/load.sh fleet — the fleet form (issue 13):
#
#   1. databases: BENCH messages (default 5,000; the shape of 1.) over
#      SESSIONS sessions to one instance on SQLite, then one and then two
#      instances on PostgreSQL (a private cluster: initdb + pg_ctl), all
#      with the S3 store on versitygw; prints msgs/s accepted and end to
#      end, p50/p99 and the ratio PostgreSQL×1 / SQLite×1 (target ≥ 0.7×);
#   2. chaos: MESSAGES (default 5,000) mixed messages spread over INSTANCES
#      (3) instances sharing PostgreSQL and one bucket while a random
#      instance is killed with kill -9 KILLS (12) times and restarted,
#      PostgreSQL is restarted twice, S3 stops twice, the smarthost once,
#      and a contract named by one message in ten is ended through one
#      instance's CLI (its certificate verified); reconciles every message
#      and verifies the one ledger. The instances run with
#      SEALGATE_DELIVERY_LEASE=1m (-lease): a killed instance's claimed
#      deliveries go to another a minute after the claim; the drain waits
#      up to 15 minutes.
#
#   bench/load.sh fleet
#   MESSAGES=20000 BENCH=0 bench/load.sh fleet -seed 42
#
# Needs: go; root (tmpfs for the disk-full fault; otherwise it is skipped);
# versitygw (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)
# for the S3 store and its outage; postfix (apt-get install postfix) for the
# comparison — the private instance has its own configuration, queue and
# port on loopback and is stopped at the end; the system's Postfix is not
# touched. The fleet form needs PostgreSQL's server binaries (apt-get install
# postgresql; as root the cluster runs as nobody, on a unix socket in a
# temporary directory removed at the end) instead of root and Postfix.
# Exit status: 0 nothing lost or leaked (and, in the fleet form, the
# certificate and the ledger verified), 1 otherwise, 2 usage.
set -euo pipefail
cd "$(dirname "$0")/.."

fleet=""
if [[ ${1:-} == fleet ]]; then
	fleet=1
	shift
fi
messages=${MESSAGES:-$([[ -n $fleet ]] && echo 5000 || echo 50000)}
bench=${BENCH:-$([[ -n $fleet ]] && echo 5000 || echo 20000)}
sessions=${SESSIONS:-10}

gobin="$(go env GOPATH)/bin"
export PATH="$gobin:$PATH"
if ! command -v versitygw >/dev/null 2>&1; then
	echo "load.sh: versitygw not found; installing it (go install)" >&2
	GOFLAGS= go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi
if [[ -n $fleet ]]; then
	if ! compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null; then
		echo "load.sh: PostgreSQL is not installed (apt-get install postgresql)" >&2
		exit 2
	fi
	exec go run ./test/chaos \
		-messages "$messages" -fleet-bench "$bench" -sessions "$sessions" \
		-instances "${INSTANCES:-3}" -database postgres \
		-kills "${KILLS:-12}" -smarthost-outages 1 -store-outages 2 -db-restarts 2 -contract-end 1 \
		-drain 15m -log-level warn -require-all "$@"
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
