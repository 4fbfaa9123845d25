#!/usr/bin/env bash
# p99 of an authorized unseal at 32 connections, with and without a concurrent flood of denied
# requests from another uid (issue 12; docs/performance.md, "Under a flood of denied requests").
#
#   benches/flood.sh [--runs N] [--duration SECONDS] [--flooders N]
#
# One release vaultd (local KMS, socket group nogroup, the bench uid granted token:unseal). The
# flood: N curl processes as uid 65533 (no grants), each sending GETs of a token over one
# kept-alive connection as fast as answers come (403 denied, then 429 rate_limited once the
# caller's refusal budget is spent). Runs alternate: quiet, flooded, quiet, flooded, …
# Prints the medians of each; the raw runs go to benches/results/flood.jsonl.
# BENCH_VAULTD_LOG sets the daemon's VAULTD_LOG (default warn: no access log; info measures it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=3 DURATION=5 FLOODERS=4
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --flooders) FLOODERS=$2; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "flood.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || { echo "flood.sh: run as root (the flood runs as uid 65533)" >&2; exit 2; }
command -v curl >/dev/null || { echo "flood.sh: needs curl" >&2; exit 2; }
say() { printf '==> %s\n' "$*" >&2; }

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
bench_build

# Servers, each in the temp dir on a Unix socket; killed by PID on exit.
bench_workdir vault-flood

mkdir -m 700 "$WORK/keys" "$WORK/data"
head -c 32 /dev/urandom >"$WORK/keys/bench.key"
chmod 600 "$WORK/keys/bench.key"
cat >"$WORK/vaultd.toml" <<EOF
data_dir = "$WORK/data"
socket = "$WORK/run/vaultd.sock"
socket_group = "nogroup"
auto_unseal = true
[kms]
provider = "local"
key_dir = "$WORK/keys"
key_id = "bench"
[[policy]]
name = "bench"
uids = [0]
capabilities = ["sys:init", "sys:status", "tenant:create", "token:seal", "token:unseal",
  "token:read", "keys:read", "audit:read"]
tenants = ["*"]
EOF
(cd "$WORK" && VAULTD_LOG="${BENCH_VAULTD_LOG:-warn}" exec "$BIN/vaultd" --config "$WORK/vaultd.toml" \
    >/dev/null 2>"$WORK/vaultd.log") &
VAULTD_PID=$!; PIDS+=("$VAULTD_PID")
SOCK=$WORK/run/vaultd.sock
for _ in $(seq 600); do [ -S "$SOCK" ] && break; sleep 0.05; done
curl -sf -X POST --unix-socket "$SOCK" http://localhost/v1/sys/init >/dev/null
COMMON=(--system vaultd --socket "$SOCK" --pid "$VAULTD_PID" --value-size 1024 --tokens 10000
    --tenants 100 --json)
say "set-up: 10000 tokens in 100 tenants"
"$LOAD" "${COMMON[@]}" --setup-only >/dev/null

# The flooders' request list: the same denied GET, many times over one connection.
for _ in $(seq 20000); do
    printf 'url = "http://localhost/v1/tenants/t0/tokens/k0"\noutput = "/dev/null"\n'
done >"$WORK/flood.curl"
chmod 644 "$WORK/flood.curl"
flood() { # until killed
    while true; do
        setpriv --reuid=65533 --regid=65534 --clear-groups \
            curl -s --unix-socket "$SOCK" -K "$WORK/flood.curl" >/dev/null || true
    done
}

RESULTS=$ROOT/benches/results/flood.jsonl
: >"$RESULTS"
for r in $(seq "$RUNS"); do
    for mode in quiet flooded; do
        FLOOD_PIDS=()
        if [ "$mode" = flooded ]; then
            for _ in $(seq "$FLOODERS"); do flood & FLOOD_PIDS+=("$!"); done
            sleep 1
        fi
        say "run $r/$RUNS: unseal, $mode (-c 32, ${DURATION}s)"
        "$LOAD" "${COMMON[@]}" -w unseal -c 32 --duration "$DURATION" --warmup 1 --no-setup \
            --label "unseal, $mode" >>"$RESULTS"
        for pid in "${FLOOD_PIDS[@]}"; do
            pkill -KILL -P "$pid" 2>/dev/null || true
            kill -KILL "$pid" 2>/dev/null || true
        done
        if [ ${#FLOOD_PIDS[@]} -gt 0 ]; then wait "${FLOOD_PIDS[@]}" 2>/dev/null || true; fi
    done
done

python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'row':<18} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'errors':>7} {'CPU us/op':>10}")
for label in ("unseal, quiet", "unseal, flooded"):
    rows = [r for r in runs if r["label"] == label]
    med = lambda f: statistics.median(f(r) for r in rows)
    print(f"{label:<18} {med(lambda r: r['ops_per_sec']):>9.0f} "
          f"{med(lambda r: r['latency']['p50_us']) / 1000:>8.3f} "
          f"{med(lambda r: r['latency']['p99_us']) / 1000:>8.3f} "
          f"{med(lambda r: r['latency']['p999_us']) / 1000:>9.3f} "
          f"{med(lambda r: r['errors']):>7.0f} {med(lambda r: r['daemon_cpu_us_per_op'] or 0):>10.1f}")
EOF
