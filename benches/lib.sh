# Shared by the bench scripts (compare.sh, flood.sh): sourced, not run.
#
#   bench_build             release vaultd and vault-load; sets BIN and LOAD
#   bench_workdir PREFIX    a temp dir in WORK (0755), removed on exit with every PID in PIDS
#                           stopped (TERM, then KILL after 10 s)

bench_build() {
    say "building vaultd and vault-load (release)"
    cargo build --release -q -p vaultd -p vault-load
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
    LOAD=$BIN/vault-load
}

bench_workdir() {
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    chmod 755 "$WORK"
    PIDS=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
