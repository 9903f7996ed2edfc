#!/usr/bin/env bash
# destroy.sh — the contract-destruction benchmark: ending a contract with
# 10,000 transfers (crypto-shredding every key, deleting every object and
# every version, proving each absent, issuing the signed certificate) on
# the fs store and on S3, reporting each phase's time, objects/s, and
# PASS/FAIL against the targets (≥ 1,500 objects/s on fs, ≥ 1,000 on S3 on
# loopback), and the certificate's bytes per object (the file's size) and
# offline verify time,
# before (v2: one inclusion proof per event; v3: one multi-proof) and after
# (v4: v3 compressed), with PASS/FAIL against ≤ 300 bytes/object, ≤ 2 s.
#
#   bench/destroy.sh                          10,000 transfers, fs and S3
#   bench/destroy.sh -transfers 1000          smaller (any flag of bench/destroy, see -h)
#   DESTROY_S3=off bench/destroy.sh           skip the S3 run
#
# The S3 run uses the store named by SEALGATE_S3_ENDPOINT (and the other
# SEALGATE_S3_* variables) when set; otherwise it starts versitygw on
# loopback with scripts/s3-server (which installs it with `go install` if
# missing) and stops it again afterwards if it was not running before.
# Exit status: 0 target met, 1 target missed, 2 an error.
set -euo pipefail

cd "$(dirname "$0")/.."

stores=fs
stop_s3=false
case ${DESTROY_S3:-auto} in
off | 0 | false) ;;
*)
	if [[ -n ${SEALGATE_S3_ENDPOINT:-} ]]; then
		stores=fs,s3
	else
		errlog=$(mktemp)
		if exports=$(scripts/s3-server start 2>"$errlog"); then
			grep -q "already running" "$errlog" || stop_s3=true
			eval "$exports"
			stores=fs,s3
		else
			echo "destroy: could not start versitygw; skipping the S3 run:" >&2
			cat "$errlog" >&2
		fi
		rm -f "$errlog"
	fi
	;;
esac
bin=$(mktemp -d)
trap 'rm -rf "$bin"; if $stop_s3; then scripts/s3-server stop; fi' EXIT
go build -o "$bin/destroy" ./bench/destroy
"$bin/destroy" -stores "$stores" "$@"
