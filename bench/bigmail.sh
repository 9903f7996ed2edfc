#!/usr/bin/env bash
# bigmail.sh — the big-message benchmark: one message with a 1 GiB attachment
# through `sealgate serve` over SMTP (BDAT and DATA), against `age -r` + fsync
# of the same plaintext and against a bare go-smtp server; to S3 against
# `age -r | bench/s3upload` (minio-go's multipart upload); a decrypting portal
# download against `age -d`; reports times, ratios, the gateway's peak RSS and
# PASS/FAIL against the targets (issue 16), each baseline timed in the run.
#
#   bench/bigmail.sh                   1 GiB, BDAT, DATA and a portal download on the fs store, BDAT on S3
#   bench/bigmail.sh -size 256MiB      smaller (any flag of bench/bigmail, see -h)
#   BIGMAIL_S3=off bench/bigmail.sh    skip the S3 run
#
# Needs go and the stock age CLI (https://age-encryption.org, e.g.
# `apt-get install age`) on PATH. The S3 run uses the store named by
# SEALGATE_S3_ENDPOINT (and the other SEALGATE_S3_* variables) when set;
# otherwise it starts a private versitygw (own loopback port, own data
# directory) with scripts/s3-server, which installs versitygw with
# `go install` if it is missing, and stops and removes it at the end. The
# work files (≈2.4 GiB for 1 GiB) go in a temporary directory under
# ${TMPDIR:-/tmp} (or -dir DIR), removed at the end.
# Exit status: 0 all targets met, 1 a target missed, 2 an error.
set -euo pipefail

cd "$(dirname "$0")/.."

if ! command -v age >/dev/null; then
	echo "bigmail: the stock age CLI is needed on PATH for the baseline (e.g. apt-get install age)" >&2
	exit 2
fi

s3args=()
s3dir=
bin=$(mktemp -d)
cleanup() {
	if [[ -n $s3dir ]]; then
		SEALGATE_S3_DIR=$s3dir scripts/s3-server stop || true
		rm -rf "$s3dir"
	fi
	rm -rf "$bin"
}
trap cleanup EXIT

case ${BIGMAIL_S3:-auto} in
off | 0 | false) ;;
*)
	if [[ -n ${SEALGATE_S3_ENDPOINT:-} ]]; then
		s3args=(-s3)
	else
		# A private versitygw (own port and data directory), so that no one
		# else's instance is used, stopped or filled by this run.
		port=
		for p in $(shuf -i 20000-39999 -n 20); do
			if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
				port=$p
				break
			fi
		done
		s3dir=$(mktemp -d "${TMPDIR:-/tmp}/bigmail-s3.XXXXXX")
		if [[ -n $port ]] && exports=$(SEALGATE_S3_DIR=$s3dir SEALGATE_S3_ADDR=127.0.0.1:$port scripts/s3-server start); then
			eval "$exports"
			s3args=(-s3)
		else
			echo "bigmail: could not start versitygw; skipping the S3 run" >&2
		fi
	fi
	;;
esac

go build -o "$bin/bigmail" ./bench/bigmail
"$bin/bigmail" "${s3args[@]}" "$@"
