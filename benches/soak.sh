#!/usr/bin/env bash
# Soak run (docs/performance.md): one vaultd (release build, --dev config, durable audit as by
# default) under a steady 90% unseal / 10% put load at half its measured peak, for an hour.
# First the peak: 20 s of that mix at 8 connections against a daemon of its own
# (vault-load --spawn); then a daemon this script starts in a temp dir, its tokens written
# once, and vault-load paced at the rate (--rate) for the duration. Every interval a sample:
# the daemon's RSS (VmRSS), open fds, data-directory bytes on disk (allocated blocks, du -s -B1,
# so key-value records the log punched out count as given back), the operations done so far
# (vault-load --progress) and the audit log's last sequence number (vault-cli audit tail).
#
#   benches/soak.sh                               # 1 hour at half the peak, a sample every 30 s
#   benches/soak.sh --duration 120 --interval 10  # a quick check (< 3 min once built)
#   benches/soak.sh --rate 5000                   # this rate (ops/s), no peak measurement
#
# Options: --duration S (3600), --interval S (30), --rate OPS_PER_SEC, --fraction F of the peak
# (0.5), --peak-duration S (20), --concurrency N (8), --value-size B (1024), --tokens N (1000),
# --tenants N (10), --out FILE (benches/results/soak.jsonl).
# Writes JSON lines: {"type":"config",…}, one {"type":"sample",…} per interval (the first
# before the load starts, the last after it ends), {"type":"run",…} (vault-load's report,
# daemon CPU per operation included) and {"type":"summary",…}: RSS at 5 min (a quarter of the
# run if it is shorter than 20 min) against the end, fds first/last/max, data-directory bytes
# per operation against the mean size of an audit entry (compact JSON of the last 100 token
# operations, as stored). Stops by itself within the duration + 2 min; kills what it started by
# PID and removes its temp dir on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=3600 INTERVAL=30 RATE="" FRACTION=0.5 PEAK_DURATION=20 CONCURRENCY=8
VALUE_SIZE=1024 TOKENS=1000 TENANTS=10 OUT=$ROOT/benches/results/soak.jsonl
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift ;;
        --interval) INTERVAL=$2; shift ;;
        --rate) RATE=$2; shift ;;
        --fraction) FRACTION=$2; shift ;;
        --peak-duration) PEAK_DURATION=$2; shift ;;
        --concurrency) CONCURRENCY=$2; shift ;;
        --value-size) VALUE_SIZE=$2; shift ;;
        --tokens) TOKENS=$2; shift ;;
        --tenants) TENANTS=$2; shift ;;
        --out) OUT=$2; shift ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "soak.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for n in "$DURATION" "$INTERVAL" "$PEAK_DURATION" "$CONCURRENCY" "$TOKENS" "$TENANTS"; do
    case "$n" in
        ''|*[!0-9]*|0) echo "soak.sh: durations and counts are whole numbers >= 1" >&2; exit 2 ;;
    esac
done
mkdir -p "$(dirname "$OUT")"
T0=$(date +%s)
say() { printf '==> [%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }

say "building vaultd, vault-load and vault-cli (release)"
cargo build --release -q -p vaultd -p vault-load -p vault-cli
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
LOAD=$BIN/vault-load CLI=$BIN/vault-cli

WORK=$(mktemp -d /tmp/vault-soak.XXXXXX)
DATA=$WORK/vaultd SOCK=$WORK/vaultd/vaultd.sock
VAULTD_PID="" LOAD_PID=""
cleanup() {
    local pid
    for pid in $LOAD_PID $VAULTD_PID; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in $LOAD_PID $VAULTD_PID; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
COMMON=(--value-size "$VALUE_SIZE" --tokens "$TOKENS" --tenants "$TENANTS" --json)

PEAK=null PEAK_CPU=null
if [ -z "$RATE" ]; then
    say "peak: mix 90/10, -c $CONCURRENCY, ${PEAK_DURATION}s against a daemon of vault-load's own"
    "$LOAD" --spawn "$BIN/vaultd" -w mix -c "$CONCURRENCY" --duration "$PEAK_DURATION" "${COMMON[@]}" \
        --label "soak peak" >"$WORK/peak.json"
    read -r PEAK PEAK_CPU < <(python3 -c 'import json, sys; r = json.load(sys.stdin)
print(r["ops_per_sec"], r["daemon_cpu_us_per_op"] or "null")' <"$WORK/peak.json")
    RATE=$(python3 -c "print(round($PEAK * $FRACTION))")
    say "peak $(printf '%.0f' "$PEAK") ops/s: the soak runs at $RATE ops/s"
fi

say "starting vaultd in $WORK"
mkdir -m 700 "$DATA"
(cd "$WORK" && VAULTD_LOG=warn exec "$BIN/vaultd" --dev --data-dir "$DATA" \
    >/dev/null 2>"$WORK/vaultd.log") &
VAULTD_PID=$!
# Health answers 200 once the vault is unsealed.
for _ in $(seq 600); do
    curl -sf -o /dev/null --unix-socket "$SOCK" http://localhost/v1/sys/health && break
    kill -0 "$VAULTD_PID" 2>/dev/null || { cat "$WORK/vaultd.log" >&2; exit 1; }
    sleep 0.05
done
curl -sf -o /dev/null --unix-socket "$SOCK" http://localhost/v1/sys/health \
    || { echo "soak.sh: vaultd not serving after 30 s; log:" >&2; cat "$WORK/vaultd.log" >&2; exit 1; }
"$LOAD" --socket "$SOCK" --pid "$VAULTD_PID" --setup-only "${COMMON[@]}" >/dev/null

printf '{"type":"config","duration_s":%s,"interval_s":%s,"rate":%s,"peak_ops_per_sec":%s,"peak_daemon_cpu_us_per_op":%s,"fraction":%s,"concurrency":%s,"value_size":%s,"tokens":%s,"tenants":%s,"workload":"mix","machine":%s}\n' \
    "$DURATION" "$INTERVAL" "$RATE" "$PEAK" "$PEAK_CPU" "$FRACTION" "$CONCURRENCY" "$VALUE_SIZE" \
    "$TOKENS" "$TENANTS" "$(python3 "$ROOT/benches/report.py" machine)" >"$OUT"

# The operations done so far: the last progress line of vault-load (one a second, and a last
# one when it ends), 0 before it starts.
ops_done() {
    local line
    line=$(grep '^{"progress"' "$WORK/progress.log" 2>/dev/null | tail -1 || true)
    [ -n "$line" ] || { echo "0 0"; return; }
    printf '%s %s\n' "$(sed -E 's/.*"ops":([0-9]+).*/\1/' <<<"$line")" \
        "$(sed -E 's/.*"errors":([0-9]+).*/\1/' <<<"$line")"
}
START_MS=$(( $(date +%s%N) / 1000000 ))
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
sample() {
    local ms t rss fds bytes ops errors seq
    kill -0 "$VAULTD_PID" 2>/dev/null \
        || { echo "soak.sh: vaultd exited; log:" >&2; cat "$WORK/vaultd.log" >&2; exit 1; }
    ms=$(( $(now_ms) - START_MS ))
    t=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$VAULTD_PID/status")
    fds=$(ls -U "/proc/$VAULTD_PID/fd" 2>/dev/null | wc -l || true)
    # du still prints the total when a file it listed is removed under it (and exits 1).
    bytes=$(du -s -B1 "$DATA" 2>/dev/null | cut -f1 || true)
    read -r ops errors < <(ops_done)
    # The log's last entry (the CLI's own reads are left out); null if the daemon did not answer.
    seq=$("$CLI" --socket "$SOCK" --json --timeout 10 audit tail -n 1 2>/dev/null \
        | sed -nE 's/^\{"seq":([0-9]+),.*/\1/p' || true)
    printf '{"type":"sample","t_s":%s,"rss_kib":%s,"fds":%s,"data_bytes":%s,"ops":%s,"errors":%s,"audit_seq":%s}\n' \
        "$t" "$rss" "$fds" "${bytes:-null}" "$ops" "$errors" "${seq:-null}" >>"$OUT"
    say "t=${t}s rss=$((rss / 1024)) MiB fds=$fds data=$((${bytes:-0} / 1048576)) MiB ops=$ops errors=$errors audit_seq=${seq:-?}"
}

sample
say "soak: mix 90/10 at $RATE ops/s, -c $CONCURRENCY, ${DURATION}s; a sample every ${INTERVAL}s"
"$LOAD" --socket "$SOCK" --pid "$VAULTD_PID" --no-setup -w mix -c "$CONCURRENCY" \
    --rate "$RATE" --duration "$DURATION" --warmup 0 --progress 1 --label soak "${COMMON[@]}" \
    >"$WORK/run.json" 2>"$WORK/progress.log" &
LOAD_PID=$!
DEADLINE=$(( $(date +%s) + DURATION + 120 ))
k=1
while kill -0 "$LOAD_PID" 2>/dev/null; do
    # Sleep to the next multiple of the interval since the start, waking early if the load ends.
    wake=$(( START_MS + k * INTERVAL * 1000 ))
    while kill -0 "$LOAD_PID" 2>/dev/null && [ "$(now_ms)" -lt "$wake" ]; do
        left=$(( wake - $(now_ms) ))
        if [ "$left" -ge 1000 ]; then
            sleep 1
        elif [ "$left" -gt 0 ]; then
            sleep "0.$(printf '%03d' "$left")"
        fi
    done
    if [ "$(date +%s)" -gt "$DEADLINE" ]; then
        echo "soak.sh: vault-load still running 2 min after the duration; stopping it" >&2
        exit 1
    fi
    kill -0 "$LOAD_PID" 2>/dev/null || break
    sample
    k=$((k + 1))
done
LOAD_RC=0
wait "$LOAD_PID" || LOAD_RC=$?
LOAD_PID=""
if [ "$LOAD_RC" != 0 ]; then
    echo "soak.sh: vault-load failed ($LOAD_RC):" >&2
    grep -v '^{"progress"' "$WORK/progress.log" >&2 || true
    exit 1
fi
sample
printf '{"type":"run","report":%s}\n' "$(cat "$WORK/run.json")" >>"$OUT"
# The last 1000 entries, of which the summary sizes the last 100 token operations (the entries
# of the samples' own audit reads are among the last ones).
"$CLI" --socket "$SOCK" --json audit tail -n 1000 >"$WORK/entries.jsonl" \
    || echo "soak.sh: could not read the audit log's last entries" >&2
python3 "$ROOT/benches/report.py" soak --samples "$OUT" --entries "$WORK/entries.jsonl"
