#!/usr/bin/env bash
# Scale run (docs/performance.md): 1,000,000 stored tokens across 10,000 tenants in one vaultd
# (release build, --dev config, durable audit as by default), loaded through the API by many
# concurrent puts; then, restarting the daemon each time, RUNS times: the time from process
# start to unsealed-and-serving (health 200), stored-unseal throughput and latency over all the
# tokens, the daemon's CPU time per unseal (and cores used) during it, and its peak (VmHWM) and
# current (VmRSS) resident memory after that run.
#
#   benches/scale.sh                 # 1,000,000 tokens / 10,000 tenants, 3 restarts × 20 s
#   benches/scale.sh --quick         # 100,000 tokens / 1,000 tenants, 3 restarts × 5 s
#   benches/scale.sh --tokens N --tenants N --runs N --duration S --concurrency N
#   benches/scale.sh --keep DIR      # keep (or reuse, if loaded) the data directory DIR
#
# Writes benches/results/scale[-quick].json. The restart is measured with a warm OS page cache
# (the files were just written); a cold start after a reboot reads the store from disk.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

TOKENS="" TENANTS="" RUNS=3 DURATION="" CONCURRENCY=32 KEEP="" SUFFIX=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) TOKENS=${TOKENS:-100000} TENANTS=${TENANTS:-1000} DURATION=${DURATION:-5} SUFFIX=-quick ;;
        --tokens) TOKENS=$2; shift ;;
        --tenants) TENANTS=$2; shift ;;
        --runs) RUNS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --concurrency) CONCURRENCY=$2; shift ;;
        --keep) KEEP=$2; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "scale.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
TOKENS=${TOKENS:-1000000} TENANTS=${TENANTS:-10000} DURATION=${DURATION:-20}
RESULTS=$ROOT/benches/results
mkdir -p "$RESULTS"
T0=$(date +%s)
say() { printf '==> [%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }

say "building vaultd and vault-load (release)"
cargo build --release -q -p vaultd -p vault-load
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
LOAD=$BIN/vault-load

# vault-load starts and stops each daemon itself (--spawn) and kills it if it fails.
WORK=$(mktemp -d /tmp/vault-scale.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
DATA=${KEEP:-$WORK/vaultd}
COMMON=(--spawn "$BIN/vaultd" --data-dir "$DATA" --tokens "$TOKENS" --tenants "$TENANTS" --json)

if [ -n "$KEEP" ] && [ -f "$KEEP/loaded-$TOKENS-$TENANTS.json" ]; then
    say "reusing the $TOKENS tokens already loaded in $KEEP"
    cp "$KEEP/loaded-$TOKENS-$TENANTS.json" "$WORK/load.jsonl"
else
    say "loading $TOKENS tokens into $TENANTS tenants (128 concurrent puts; progress below)"
    "$LOAD" "${COMMON[@]}" --setup-only --setup-concurrency 128 >"$WORK/load.jsonl"
    if [ -n "$KEEP" ]; then cp "$WORK/load.jsonl" "$KEEP/loaded-$TOKENS-$TENANTS.json"; fi
fi
du -sh "$DATA" >&2

: >"$WORK/runs.jsonl"
for r in $(seq "$RUNS"); do
    say "restart $r/$RUNS, then unseal over all tokens (-c $CONCURRENCY, ${DURATION}s)"
    "$LOAD" "${COMMON[@]}" --no-setup -w unseal -c "$CONCURRENCY" --duration "$DURATION" \
        --warmup 1 --label "scale unseal" >>"$WORK/runs.jsonl"
done
python3 "$ROOT/benches/report.py" scale --load "$WORK/load.jsonl" --runs "$WORK/runs.jsonl" \
    --out "$RESULTS/scale$SUFFIX.json" --fsync-dir "$WORK"
