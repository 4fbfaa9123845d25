#!/usr/bin/env bash
# vaultd side by side with what a platform team would run instead, on this machine, in one run
# (docs/performance.md):
#
#   vaultd      stored unseal, durable put, 90/10 mix (release build, --dev config: local KMS,
#               every operation durably audited, as by default)
#   redis       GET and SET, no pipelining; SET again with appendonly yes + appendfsync always
#   PostgreSQL  pgcrypto: read with pgp_sym_decrypt, upsert with pgp_sym_encrypt, and the same
#               with raw encrypt/decrypt(…, 'aes'); synchronous_commit=on
#
# Every system is driven by the same harness (vault-load: one request in flight per connection,
# the same key scheme, value size and latency record), each server on a Unix socket in a temp
# dir, killed by its PID at the end. Every row also gets the server's CPU time per operation
# (vault-load --pid: user + system time of the server's process and those below it, so
# PostgreSQL's postmaster with its backends). Then a sweep of p99 latency against concurrency
# for vaultd unseal, redis GET and the PostgreSQL raw-AES read, plotted to docs/perf-latency.svg.
#
#   benches/compare.sh --quick      # < 5 min once built (3 runs × 3 s per row, short sweep)
#   benches/compare.sh              # 5 runs × 10 s per row, 3 runs per sweep point
#   benches/compare.sh --scale      # then benches/scale.sh (1,000,000 tokens, 10,000 tenants)
#
# Options: --runs N, --duration S, --concurrency N (32), --value-size B (1024),
# --tokens N (10000), --tenants N (100), --no-sweep, --no-plot.
# Writes benches/results/compare[-quick].json (medians and every run, daemon_cpu_us_per_op and
# daemon_cores included) and sweep[-quick].json.
# Missing servers are installed from Debian packages (needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0 SCALE=0 SWEEP=1 PLOT=1
RUNS="" DURATION="" CONCURRENCY=32 VALUE_SIZE=1024 TOKENS=10000 TENANTS=100
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --scale) SCALE=1 ;;
        --no-sweep) SWEEP=0 ;;
        --no-plot) PLOT=0 ;;
        --runs) RUNS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --concurrency) CONCURRENCY=$2; shift ;;
        --value-size) VALUE_SIZE=$2; shift ;;
        --tokens) TOKENS=$2; shift ;;
        --tenants) TENANTS=$2; shift ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$QUICK" = 1 ]; then
    RUNS=${RUNS:-3} DURATION=${DURATION:-3} WARMUP=1 SWEEP_RUNS=1 SWEEP_DURATION=2 SUFFIX=-quick
else
    RUNS=${RUNS:-5} DURATION=${DURATION:-10} WARMUP=2 SWEEP_RUNS=3 SWEEP_DURATION=5 SUFFIX=""
fi
SWEEP_LEVELS="1 4 16 32 64"
RESULTS=$ROOT/benches/results
mkdir -p "$RESULTS"
T0=$(date +%s)
say() { printf '==> [%3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }

# ---- tools: install what is missing from Debian packages ----
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
[ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] || missing+=(postgresql)
ls /usr/share/postgresql/*/extension/pgcrypto.control >/dev/null 2>&1 || missing+=(postgresql-contrib)
command -v python3 >/dev/null || missing+=(python3)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    say "installing ${missing[*]} (apt-get)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi

# ---- build: release vaultd and the load generator ----
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
bench_build

# Servers, each in the temp dir on a Unix socket; killed by PID on exit.
bench_workdir vault-compare

wait_for() { # seconds, description, command…
    local limit=$1 what=$2; shift 2
    for _ in $(seq $((limit * 20))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
    echo "compare.sh: $what did not come up; logs in $WORK" >&2; exit 1
}

say "starting vaultd, redis (twice) and PostgreSQL in $WORK"
mkdir -m 700 "$WORK/vaultd"
(cd "$WORK" && VAULTD_LOG=warn exec "$BIN/vaultd" --dev --data-dir "$WORK/vaultd" \
    >/dev/null 2>"$WORK/vaultd.log") &
VAULTD_PID=$!; PIDS+=("$VAULTD_PID")
# Health answers 200 once the vault is unsealed (503 sealed, 501 uninitialized).
wait_for 30 vaultd curl -sf -o /dev/null --unix-socket "$WORK/vaultd/vaultd.sock" \
    http://localhost/v1/sys/health

start_redis() { # name, extra redis-server arguments…
    local name=$1; shift
    mkdir "$WORK/$name"
    redis-server --port 0 --unixsocket "$WORK/$name.sock" --unixsocketperm 700 \
        --dir "$WORK/$name" --save '' --daemonize no --logfile "$WORK/$name.log" "$@" &
    PIDS+=("$!")
    wait_for 10 "$name" redis-cli -s "$WORK/$name.sock" ping
}
start_redis redis --appendonly no
REDIS_PID=${PIDS[-1]}
start_redis redis-aof --appendonly yes --appendfsync always
REDIS_AOF_PID=${PIDS[-1]}

# initdb refuses root: run PostgreSQL as its Debian user then. setpriv and the subshell exec,
# so $! is the postmaster's PID.
AS_PG=()
mkdir "$WORK/pg"
if [ "$(id -u)" = 0 ]; then
    AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups)
    chown postgres: "$WORK/pg"
fi
(cd "$WORK/pg" && "${AS_PG[@]}" "$PG_BIN/initdb" -D "$WORK/pg/data" --auth=trust -U postgres \
    --no-locale -E UTF8 >"$WORK/initdb.log" 2>&1)
(cd "$WORK/pg" && exec "${AS_PG[@]}" "$PG_BIN/postgres" -D "$WORK/pg/data" -k "$WORK/pg" \
    -c listen_addresses= -c synchronous_commit=on -c fsync=on -c max_connections=200 \
    -c shared_buffers=256MB >"$WORK/postgres.log" 2>&1) &
PG_PID=$!; PIDS+=("$PG_PID")
PG_SOCKET=$WORK/pg/.s.PGSQL.5432
wait_for 30 PostgreSQL "$PG_BIN/pg_isready" -q -h "$WORK/pg"

# vaultd on that PostgreSQL (docs/ha.md): node-a and node-b, both serving reads and writes on one database, the
# same local KMS key, each on its own socket. Their rows measure vaultd's CPU (--pid); the
# server's own is in the PostgreSQL rows.
"${AS_PG[@]}" "$PG_BIN/psql" -h "$WORK/pg" -U postgres -qc "CREATE DATABASE vaultd" >/dev/null
mkdir -m 700 "$WORK/pg-keys"
head -c 32 /dev/urandom >"$WORK/pg-keys/bench.key"
chmod 600 "$WORK/pg-keys/bench.key"
printf 'host=%s user=postgres dbname=vaultd' "$WORK/pg" >"$WORK/pg.conn"
chmod 600 "$WORK/pg.conn"
start_pg_node() { # node id
    local n=$1
    mkdir -m 700 "$WORK/$n"
    cat >"$WORK/$n.toml" <<EOF
data_dir = "$WORK/$n/data"
socket = "$WORK/$n/vaultd.sock"
auto_unseal = true
[kms]
provider = "local"
key_dir = "$WORK/pg-keys"
key_id = "bench"
[postgres]
url_file = "$WORK/pg.conn"
node_id = "$n"
[[policy]]
name = "bench"
uids = [$(id -u)]
capabilities = ["sys:init", "sys:status", "tenant:create", "token:seal", "token:unseal",
  "token:read", "transit:seal", "transit:unseal", "keys:read", "audit:read"]
tenants = ["*"]
EOF
    (cd "$WORK" && VAULTD_LOG=warn exec "$BIN/vaultd" --config "$WORK/$n.toml" \
        >/dev/null 2>"$WORK/$n.log") &
    PIDS+=("$!")
}
health_is() { # socket, HTTP status of /v1/sys/health
    test "$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$1" http://localhost/v1/sys/health)" = "$2"
}
start_pg_node node-a
NODE_A_PID=${PIDS[-1]}
wait_for 30 "vaultd node-a" health_is "$WORK/node-a/vaultd.sock" 501
curl -sf -X POST --unix-socket "$WORK/node-a/vaultd.sock" http://localhost/v1/sys/init >/dev/null
wait_for 30 "vaultd node-a unsealed" health_is "$WORK/node-a/vaultd.sock" 200
start_pg_node node-b
NODE_B_PID=${PIDS[-1]}
wait_for 30 "vaultd node-b unsealed" health_is "$WORK/node-b/vaultd.sock" 200

# ---- the rows: label | system | workload | extra vault-load arguments ----
# --pid: memory and CPU per operation of that server (PostgreSQL: the postmaster and the
# backends below it).
VAULTD_ARGS="--socket $WORK/vaultd/vaultd.sock --pid $VAULTD_PID"
REDIS_ARGS="--socket $WORK/redis.sock --pid $REDIS_PID"
REDIS_AOF_ARGS="--socket $WORK/redis-aof.sock --pid $REDIS_AOF_PID"
PG_ARGS="--socket $PG_SOCKET --pid $PG_PID"
NODE_A_ARGS="--socket $WORK/node-a/vaultd.sock --pid $NODE_A_PID"
NODE_B_ARGS="--socket $WORK/node-b/vaultd.sock --pid $NODE_B_PID"
ROWS=(
    "vaultd unseal|vaultd|unseal|$VAULTD_ARGS"
    "vaultd put|vaultd|put|$VAULTD_ARGS"
    "vaultd mix 90/10|vaultd|mix|$VAULTD_ARGS"
    "redis GET|redis|get|$REDIS_ARGS"
    "redis SET|redis|set|$REDIS_ARGS"
    "redis SET appendfsync always|redis|set|$REDIS_AOF_ARGS"
    "postgres pgp_sym_decrypt read|postgres|read|$PG_ARGS --pg-crypto pgp"
    "postgres pgp_sym_encrypt upsert|postgres|upsert|$PG_ARGS --pg-crypto pgp"
    "postgres aes decrypt read|postgres|read|$PG_ARGS --pg-crypto aes"
    "postgres aes encrypt upsert|postgres|upsert|$PG_ARGS --pg-crypto aes"
    "vaultd on postgres unseal|vaultd|unseal|$NODE_A_ARGS"
    "vaultd on postgres put|vaultd|put|$NODE_A_ARGS"
)
COMMON=(--value-size "$VALUE_SIZE" --tokens "$TOKENS" --tenants "$TENANTS" --json)

# Set-up once per store: tenants and tokens in vaultd, keys in both redis, both tables.
say "set-up: $TOKENS tokens in $TENANTS tenants in each store"
for setup in "vaultd|--socket $WORK/vaultd/vaultd.sock" "redis|--socket $WORK/redis.sock" \
    "redis|--socket $WORK/redis-aof.sock" "postgres|--socket $PG_SOCKET --pg-crypto pgp" \
    "postgres|--socket $PG_SOCKET --pg-crypto aes" "vaultd|--socket $WORK/node-a/vaultd.sock"; do
    IFS='|' read -r system extra <<<"$setup"
    # shellcheck disable=SC2086
    "$LOAD" --system "$system" $extra "${COMMON[@]}" --setup-only >/dev/null
done

RUNS_FILE=$WORK/runs.jsonl
: >"$RUNS_FILE"
python3 "$ROOT/benches/report.py" machine --fsync-dir "$WORK" >"$WORK/machine-before.json"
# Round-robin: run r of every row, then run r+1, so drifting background load hits all alike.
for r in $(seq "$RUNS"); do
    for row in "${ROWS[@]}"; do
        IFS='|' read -r label system workload extra <<<"$row"
        say "run $r/$RUNS: $label (-c $CONCURRENCY, ${DURATION}s)"
        # shellcheck disable=SC2086
        "$LOAD" --system "$system" -w "$workload" $extra -c "$CONCURRENCY" \
            --duration "$DURATION" --warmup "$WARMUP" --no-setup --label "$label" \
            "${COMMON[@]}" >>"$RUNS_FILE"
    done
done

# Two nodes under the same total load: half the connections each, both at once. Both write:
# their groups of puts commit one at a time under the database's write lock (docs/ha.md).
for r in $(seq "$RUNS"); do
    for workload in unseal put; do
        say "run $r/$RUNS: vaultd on postgres, 2 nodes, $workload (-c $((CONCURRENCY / 2)) each)"
        pair=()
        for node in a b; do
            args=NODE_${node^^}_ARGS
            # shellcheck disable=SC2086
            "$LOAD" --system vaultd -w "$workload" ${!args} -c $((CONCURRENCY / 2)) \
                --duration "$DURATION" --warmup "$WARMUP" --no-setup \
                --label "vaultd on postgres, 2 nodes: node-$node $workload" "${COMMON[@]}" \
                >"$WORK/pair-$node.json" &
            pair+=("$!")
        done
        wait "${pair[@]}"
        cat "$WORK/pair-a.json" "$WORK/pair-b.json" >>"$RUNS_FILE"
    done
done

SWEEP_FILE=$WORK/sweep.jsonl
: >"$SWEEP_FILE"
if [ "$SWEEP" = 1 ]; then
    SWEEP_ROWS=(
        "vaultd unseal|vaultd|unseal|$VAULTD_ARGS"
        "redis GET|redis|get|$REDIS_ARGS"
        "postgres aes decrypt read|postgres|read|$PG_ARGS --pg-crypto aes"
    )
    for r in $(seq "$SWEEP_RUNS"); do
        for c in $SWEEP_LEVELS; do
            for row in "${SWEEP_ROWS[@]}"; do
                IFS='|' read -r label system workload extra <<<"$row"
                say "sweep $r/$SWEEP_RUNS: $label -c $c"
                # shellcheck disable=SC2086
                "$LOAD" --system "$system" -w "$workload" $extra -c "$c" \
                    --duration "$SWEEP_DURATION" --warmup 0.5 --no-setup --label "$label" \
                    "${COMMON[@]}" >>"$SWEEP_FILE"
            done
        done
    done
fi
python3 "$ROOT/benches/report.py" machine --fsync-dir "$WORK" >"$WORK/machine-after.json"

python3 "$ROOT/benches/report.py" compare --runs "$RUNS_FILE" \
    --machine-before "$WORK/machine-before.json" --machine-after "$WORK/machine-after.json" \
    --out "$RESULTS/compare$SUFFIX.json" --reference-read "vaultd unseal" --reference-write "vaultd put"
if [ "$SWEEP" = 1 ]; then
    python3 "$ROOT/benches/report.py" sweep --runs "$SWEEP_FILE" --out "$RESULTS/sweep$SUFFIX.json"
    if [ "$PLOT" = 1 ]; then
        python3 "$ROOT/benches/report.py" plot --sweep "$RESULTS/sweep$SUFFIX.json" \
            --out "$ROOT/docs/perf-latency.svg"
    fi
fi
say "done: benches/results/compare$SUFFIX.json"

if [ "$SCALE" = 1 ]; then
    cleanup
    trap - EXIT
    if [ "$QUICK" = 1 ]; then exec "$ROOT/benches/scale.sh" --quick; fi
    exec "$ROOT/benches/scale.sh"
fi
