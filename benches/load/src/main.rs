//! `vault-load`: drives N concurrent connections over a Unix socket, one request in flight on
//! each, against vaultd (through vault-client), redis-server or PostgreSQL with pgcrypto, so
//! that every system is measured by the same harness and the same latency record.
//! docs/performance.md tells how the numbers there were made.
//!
//! ```text
//! vault-load --spawn target/release/vaultd --workload unseal -c 32 --duration 10
//! vault-load --system redis --socket /tmp/x/redis.sock --workload get --json
//! ```
//!
//! # Layout
//! - `conn`: one connection per system, the operations, the key and value scheme.
//! - `cpu`: the server's CPU time (it and its child processes) from /proc.
//! - `daemon`: a `vaultd --dev` of our own, its start-to-serving time, memory from /proc.
//! - `pace`: `--rate`, each connection's share of a fixed total rate.
//! - `pg`, `resp`: minimal PostgreSQL (protocol v3) and redis (RESP2) clients.
//! - `stats`: latency percentiles.

mod conn;
mod cpu;
mod daemon;
mod pace;
mod pg;
mod resp;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use tokio::sync::Barrier;
use tokio::time::MissedTickBehavior;

use conn::{Conn, Op, PgCrypto, System, Target};
use cpu::Clock;
use daemon::{Daemon, Memory};
use pace::Pacer;
use stats::{Latency, nanos};

/// Load generator for vaultd, redis and PostgreSQL over Unix sockets.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The system under test.
    #[arg(long, value_enum, default_value_t = System::Vaultd)]
    system: System,
    /// What each connection does: `unseal` (alias `get`, `read`), `put` (alias `set`,
    /// `upsert`, `write`), `transit-seal`, `transit-unseal`, or `mix` (90% unseal, 10% put).
    #[arg(long, short, value_enum, default_value_t = Workload::Unseal)]
    workload: Workload,
    /// The server's socket (PostgreSQL: the socket file, `DIR/.s.PGSQL.5432`).
    #[arg(long, required_unless_present = "spawn")]
    socket: Option<PathBuf>,
    /// Start this vaultd binary with a `--dev` configuration in `--data-dir` (default: a temp
    /// dir, removed at the end), measure its start to unsealed-and-serving, stop it at the end.
    #[arg(long, conflicts_with = "socket")]
    spawn: Option<PathBuf>,
    /// Data directory of the spawned daemon; kept, and reused by the next run.
    #[arg(long, requires = "spawn")]
    data_dir: Option<PathBuf>,
    /// The server's process (default: the spawned daemon): its peak (VmHWM) and current RSS
    /// at the end, and the CPU time it and the processes below it (PostgreSQL's backends)
    /// used during the measured phase.
    #[arg(long)]
    pid: Option<u32>,
    /// Concurrent connections, each with one request in flight.
    #[arg(long, short, default_value_t = 32)]
    concurrency: usize,
    /// Measured seconds (after the warm-up). Default 10 unless `--count` is given.
    #[arg(long, short, conflicts_with = "count")]
    duration: Option<f64>,
    /// Run exactly this many operations (no warm-up) instead of a duration.
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// Warm-up seconds before the measured duration.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Operations per second in total, each connection pacing its share evenly (default: as
    /// fast as the server answers). A connection that falls behind catches up on at most
    /// 50 ms of its schedule at once.
    #[arg(long, value_name = "OPS_PER_SEC")]
    rate: Option<f64>,
    /// Every SECS seconds of the load phase, print to stderr the operations done so far
    /// (warm-up included) and the errors: a line `{"progress":{"secs":…,"ops":…,"errors":…}}`
    /// with `--json`.
    #[arg(long, value_name = "SECS")]
    progress: Option<f64>,
    /// Bytes of each secret.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Tenants the tokens are spread over.
    #[arg(long, default_value_t = 10)]
    tenants: usize,
    /// Stored tokens (token i belongs to tenant i % tenants); operations pick one at random.
    #[arg(long, default_value_t = 1000)]
    tokens: usize,
    /// Skip the set-up phase (tenants, tokens, tables): they exist from an earlier run.
    #[arg(long)]
    no_setup: bool,
    /// Only the set-up phase.
    #[arg(long, conflicts_with = "no_setup")]
    setup_only: bool,
    /// Connections of the set-up phase.
    #[arg(long, default_value_t = 64)]
    setup_concurrency: usize,
    /// PostgreSQL: pgcrypto's OpenPGP functions or raw AES.
    #[arg(long, value_enum, default_value_t = PgCrypto::Aes)]
    pg_crypto: PgCrypto,
    /// PostgreSQL user (the socket must allow it with `trust`).
    #[arg(long, default_value = "postgres")]
    pg_user: String,
    /// PostgreSQL database.
    #[arg(long, default_value = "postgres")]
    pg_database: String,
    /// Worker threads of the load generator (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// A label copied into the JSON output.
    #[arg(long)]
    label: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// What each connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum Workload {
    /// Read a stored token (vaultd: unseal, durably audited).
    #[value(alias = "get", alias = "read")]
    Unseal,
    /// Write a stored token (vaultd: durable put).
    #[value(alias = "set", alias = "upsert", alias = "write")]
    Put,
    /// Transit seal (vaultd only).
    TransitSeal,
    /// Transit unseal (vaultd only).
    TransitUnseal,
    /// 90% unseal, 10% put.
    Mix,
}

/// What one run measured; `--json` prints it.
#[derive(Debug, serde::Serialize)]
struct Report {
    label: Option<String>,
    system: System,
    workload: Workload,
    pg_crypto: Option<PgCrypto>,
    concurrency: usize,
    value_size: usize,
    tenants: usize,
    tokens: usize,
    /// `--rate`: the total ops/s the connections were paced to.
    rate: Option<f64>,
    /// Seconds measured (the warm-up excluded).
    secs: f64,
    ops: u64,
    ops_per_sec: f64,
    errors: u64,
    first_errors: Vec<String>,
    latency: Latency,
    /// Mix only: reads and writes apart.
    read: Option<Latency>,
    write: Option<Latency>,
    setup: Option<Setup>,
    daemon: Option<Memory>,
    /// CPU time (user + system) of the server's process and the processes below it during the
    /// measured phase.
    daemon_cpu_seconds: Option<f64>,
    /// `daemon_cpu_seconds` per measured operation, in µs.
    daemon_cpu_us_per_op: Option<f64>,
    /// `daemon_cpu_seconds` over the measured wall time: cores kept busy.
    daemon_cores: Option<f64>,
    /// Processes `daemon_cpu_seconds` sums (1 for vaultd and redis).
    daemon_cpu_processes: Option<usize>,
    start_to_serving_ms: Option<f64>,
}

/// Operations finished so far, for `--progress`.
#[derive(Default)]
struct Counters {
    ops: AtomicU64,
    errors: AtomicU64,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Setup {
    concurrency: usize,
    tenants: usize,
    tokens: usize,
    secs: f64,
    tokens_per_sec: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        runtime.worker_threads(n);
    }
    let result = runtime
        .enable_all()
        .build()
        .context("starting the runtime")
        .and_then(|rt| rt.block_on(run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vault-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    check(&args)?;
    let daemon = match &args.spawn {
        Some(vaultd) => Some(Daemon::spawn(vaultd, args.data_dir.as_deref()).await?),
        None => None,
    };
    let pid = args.pid.or(daemon.as_ref().and_then(Daemon::pid));
    let clock = pid.map(Clock::new).transpose()?;
    let socket = match (&daemon, &args.socket) {
        (Some(d), _) => d.socket.clone(),
        (None, Some(s)) => s.clone(),
        (None, None) => bail!("--socket or --spawn is required"),
    };
    let target = Arc::new(Target {
        system: args.system,
        socket,
        pg_crypto: args.pg_crypto,
        pg_user: args.pg_user.clone(),
        pg_database: args.pg_database.clone(),
        value: (0..args.value_size)
            .map(|i| b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[i % 62])
            .collect(),
        tenants: args.tenants,
        tokens: args.tokens,
    });
    let setup = if args.no_setup {
        None
    } else {
        Some(setup(&target, &args).await?)
    };
    let mut report = Report {
        label: args.label.clone(),
        system: args.system,
        workload: args.workload,
        pg_crypto: (args.system == System::Postgres).then_some(args.pg_crypto),
        concurrency: args.concurrency,
        value_size: args.value_size,
        tenants: args.tenants,
        tokens: args.tokens,
        rate: args.rate,
        secs: 0.0,
        ops: 0,
        ops_per_sec: 0.0,
        errors: 0,
        first_errors: Vec::new(),
        latency: Latency::default(),
        read: None,
        write: None,
        setup,
        daemon: None,
        daemon_cpu_seconds: None,
        daemon_cpu_us_per_op: None,
        daemon_cores: None,
        daemon_cpu_processes: None,
        start_to_serving_ms: daemon
            .as_ref()
            .map(|d| d.start_to_serving.as_secs_f64() * 1e3),
    };
    if !args.setup_only {
        load(&target, &args, clock, &mut report).await?;
    }
    if let Some(pid) = pid {
        report.daemon = Some(Memory::of(pid)?);
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report, args.setup_only);
    }
    if let Some(daemon) = daemon {
        daemon.stop().await?;
    }
    if !args.setup_only && report.ops == 0 {
        bail!("no operation succeeded ({} errors)", report.errors);
    }
    Ok(())
}

fn check(args: &Args) -> anyhow::Result<()> {
    if args.concurrency == 0 || args.tenants == 0 || args.tokens == 0 {
        bail!("--concurrency, --tenants and --tokens must be at least 1");
    }
    let transit = matches!(
        args.workload,
        Workload::TransitSeal | Workload::TransitUnseal
    );
    if transit && args.system != System::Vaultd {
        bail!("transit workloads are vaultd only");
    }
    for (name, value) in [("--rate", args.rate), ("--progress", args.progress)] {
        if value.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
            bail!("{name} must be a positive number");
        }
    }
    if args.spawn.is_some() && args.system != System::Vaultd {
        bail!(
            "--spawn starts vaultd only; start redis or PostgreSQL yourself (benches/compare.sh)"
        );
    }
    Ok(())
}

/// Creates the tenants (vaultd), the table (PostgreSQL) and writes every token once.
async fn setup(target: &Arc<Target>, args: &Args) -> anyhow::Result<Setup> {
    target.prepare_schema().await?;
    let started = Instant::now();
    if target.system == System::Vaultd {
        parallel(
            target,
            args.setup_concurrency,
            target.tenants,
            Op::CreateTenant,
        )
        .await
        .context("creating tenants")?;
    }
    parallel(target, args.setup_concurrency, target.tokens, Op::Write)
        .await
        .context("writing tokens")?;
    let secs = started.elapsed().as_secs_f64();
    Ok(Setup {
        concurrency: args.setup_concurrency,
        tenants: target.tenants,
        tokens: target.tokens,
        secs,
        tokens_per_sec: target.tokens as f64 / secs,
    })
}

/// Runs `op(i)` for every i below `total` on `concurrency` connections; fails on any error.
async fn parallel(
    target: &Arc<Target>,
    concurrency: usize,
    total: usize,
    op: fn(usize) -> Op,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency.clamp(1, total))
        .map(|_| {
            let (target, next) = (target.clone(), next.clone());
            tokio::spawn(async move {
                let mut conn = Conn::connect(&target).await?;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return anyhow::Ok(());
                    }
                    conn.run(op(i))
                        .await
                        .with_context(|| format!("{:?}", op(i)))?;
                    if i > 0 && i % 100_000 == 0 {
                        let rate = i as f64 / started.elapsed().as_secs_f64();
                        eprintln!("vault-load: set-up {i}/{total} ({rate:.0}/s)");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.context("set-up task panicked")??;
    }
    Ok(())
}

/// What one connection recorded.
#[derive(Default)]
struct Recorded {
    /// Latencies in ns: [reads, writes].
    samples: [Vec<u64>; 2],
    errors: u64,
    first_errors: Vec<String>,
}

/// The measured phase; with a `clock`, the server's CPU time from the end of the warm-up to
/// the end of the measured duration (or the last of `--count`).
async fn load(
    target: &Arc<Target>,
    args: &Args,
    clock: Option<Clock>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let duration = match (args.count, args.duration) {
        (Some(_), _) => None,
        (None, d) => Some(Duration::from_secs_f64(d.unwrap_or(10.0))),
    };
    let warmup = Duration::from_secs_f64(if duration.is_some() { args.warmup } else { 0.0 });
    // The connections and the CPU sampler start together.
    let barrier = Arc::new(Barrier::new(args.concurrency + 1));
    let start = Arc::new(OnceLock::<Instant>::new());
    let issued = Arc::new(AtomicU64::new(0));
    let counters = Arc::new(Counters::default());
    let progress = args
        .progress
        .map(|secs| tokio::spawn(progress(secs, args.json, start.clone(), counters.clone())));
    let sampler = {
        let (barrier, start) = (barrier.clone(), start.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            let t0 = *start.get_or_init(Instant::now);
            let Some(clock) = clock else {
                return anyhow::Ok(None);
            };
            tokio::time::sleep_until((t0 + warmup).into()).await;
            let from = clock.sample()?;
            let to = match duration {
                Some(d) => {
                    tokio::time::sleep_until((t0 + warmup + d).into()).await;
                    Some(clock.sample()?)
                }
                None => None,
            };
            Ok(Some((from, to)))
        })
    };
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|w| {
            let (target, barrier, start, issued, counters) = (
                target.clone(),
                barrier.clone(),
                start.clone(),
                issued.clone(),
                counters.clone(),
            );
            let (workload, count, rate, concurrency) =
                (args.workload, args.count, args.rate, args.concurrency);
            tokio::spawn(async move {
                let conn = connect_worker(&target, workload, w).await;
                // Every connection is open before the clock starts (and a failed one must
                // still reach the barrier, or the others would wait for ever).
                barrier.wait().await;
                let mut conn = conn?;
                let t0 = *start.get_or_init(Instant::now);
                let window = duration.map(|d| (t0 + warmup, t0 + warmup + d));
                let mut pacer = rate.map(|r| Pacer::new(r, concurrency, w, t0.into()));
                let mut rng = Rng::new(w as u64);
                let mut rec = Recorded::default();
                loop {
                    if let Some(pacer) = &mut pacer {
                        pacer.tick().await;
                    }
                    if let Some(count) = count
                        && issued.fetch_add(1, Ordering::Relaxed) >= count
                    {
                        break;
                    }
                    let (kind, op) = pick(workload, &mut rng, target.tokens);
                    let begin = Instant::now();
                    if window.is_some_and(|(_, end)| begin >= end) {
                        break;
                    }
                    let result = conn.run(op).await;
                    let done = Instant::now();
                    let counter = if result.is_ok() {
                        &counters.ops
                    } else {
                        &counters.errors
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    if window.is_some_and(|(from, to)| begin < from || done > to) {
                        continue;
                    }
                    match result {
                        Ok(()) => rec.samples[kind].push(nanos(done - begin)),
                        Err(e) => {
                            rec.errors += 1;
                            if rec.first_errors.len() < 3 {
                                rec.first_errors.push(format!("{e:#}"));
                            }
                        }
                    }
                }
                // The connection stays open until the last CPU sample: PostgreSQL's backend
                // of it would otherwise exit with its CPU time before it.
                anyhow::Ok((rec, conn))
            })
        })
        .collect();
    let mut all = Recorded::default();
    let mut conns = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (rec, conn) = task.await.context("load task panicked")??;
        conns.push(conn);
        for (into, from) in all.samples.iter_mut().zip(rec.samples) {
            into.extend(from);
        }
        all.errors += rec.errors;
        all.first_errors.extend(rec.first_errors);
    }
    let elapsed = start.get().map_or(Duration::ZERO, Instant::elapsed);
    let cpu = match (clock, sampler.await.context("CPU sampler panicked")??) {
        (Some(clock), Some((from, to))) => {
            let to = match to {
                Some(to) => to,
                None => clock.sample()?,
            };
            Some(clock.used(from, to))
        }
        _ => None,
    };
    drop(conns);
    if let Some(progress) = progress {
        progress.abort();
        // The last line counts every operation, for a caller that reads only the last one.
        counters.print(args.json, elapsed.as_secs_f64(), None);
    }
    report.secs = duration.unwrap_or(elapsed).as_secs_f64();
    let [mut reads, mut writes] = all.samples;
    if args.workload == Workload::Mix {
        report.read = Some(Latency::of(&mut reads));
        report.write = Some(Latency::of(&mut writes));
    }
    reads.append(&mut writes);
    report.latency = Latency::of(&mut reads);
    report.ops = report.latency.ops;
    report.ops_per_sec = report.ops as f64 / report.secs;
    report.errors = all.errors;
    all.first_errors.truncate(5);
    report.first_errors = all.first_errors;
    if let Some(cpu) = cpu {
        report.daemon_cpu_seconds = Some(cpu.seconds);
        report.daemon_cpu_us_per_op =
            (report.ops > 0).then(|| cpu.seconds * 1e6 / report.ops as f64);
        report.daemon_cores = (cpu.wall_seconds > 0.0).then(|| cpu.seconds / cpu.wall_seconds);
        report.daemon_cpu_processes = Some(cpu.processes);
    }
    Ok(())
}

/// `--progress`: every `secs`, the operations finished since the start (warm-up included).
async fn progress(secs: f64, json: bool, start: Arc<OnceLock<Instant>>, counters: Arc<Counters>) {
    let every = Duration::from_secs_f64(secs);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_ops = 0;
    loop {
        let at = ticks.tick().await;
        let secs = start.get().map_or(0.0, |t0| {
            at.into_std().saturating_duration_since(*t0).as_secs_f64()
        });
        let ops = counters.ops.load(Ordering::Relaxed);
        let rate = ops.saturating_sub(last_ops) as f64 / every.as_secs_f64();
        counters.print(json, secs, Some(rate));
        last_ops = ops;
    }
}

impl Counters {
    /// One `--progress` line to stderr; `rate`: ops/s since the line before.
    fn print(&self, json: bool, secs: f64, rate: Option<f64>) {
        let ops = self.ops.load(Ordering::Relaxed);
        let errors = self.errors.load(Ordering::Relaxed);
        if json {
            let secs = (secs * 1e3).round() / 1e3;
            let line =
                serde_json::json!({"progress": {"secs": secs, "ops": ops, "errors": errors}});
            eprintln!("{line}");
        } else {
            let rate = rate.map(|r| format!(" ({r:.0}/s)")).unwrap_or_default();
            eprintln!("vault-load: {secs:.1} s: {ops} ops{rate}, {errors} errors");
        }
    }
}

async fn connect_worker(
    target: &Arc<Target>,
    workload: Workload,
    worker: usize,
) -> anyhow::Result<Conn> {
    let mut conn = Conn::connect(target).await?;
    if workload == Workload::TransitUnseal {
        conn.prepare_transit(worker).await?;
    }
    Ok(conn)
}

/// The next operation: a token picked uniformly; index 0 reads, 1 writes.
fn pick(workload: Workload, rng: &mut Rng, tokens: usize) -> (usize, Op) {
    let i = rng.below(tokens);
    match workload {
        Workload::Unseal => (0, Op::Read(i)),
        Workload::Put => (1, Op::Write(i)),
        Workload::TransitSeal => (1, Op::TransitSeal(i)),
        Workload::TransitUnseal => (0, Op::TransitUnseal),
        Workload::Mix if rng.below(10) == 0 => (1, Op::Write(i)),
        Workload::Mix => (0, Op::Read(i)),
    }
}

/// xorshift64*: uniform enough to pick keys, and no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        // Multiply-shift: maps 64 random bits onto 0..n without a modulo bias worth noticing.
        ((u128::from(x) * n as u128) >> 64) as usize
    }
}

/// The system and its operation, as a user of that system would name them.
fn what(r: &Report) -> String {
    let crypto = match r.pg_crypto {
        Some(PgCrypto::Aes) => "encrypt/decrypt 'aes'",
        Some(PgCrypto::Pgp) => "pgp_sym_encrypt/pgp_sym_decrypt",
        None => "",
    };
    match (r.system, r.workload) {
        (System::Redis, Workload::Unseal) => "redis GET".into(),
        (System::Redis, Workload::Put) => "redis SET".into(),
        (System::Redis, Workload::Mix) => "redis 90% GET / 10% SET".into(),
        (System::Postgres, Workload::Unseal) => format!("PostgreSQL read ({crypto})"),
        (System::Postgres, Workload::Put) => format!("PostgreSQL upsert ({crypto})"),
        (System::Postgres, Workload::Mix) => format!("PostgreSQL 90% read / 10% upsert ({crypto})"),
        (_, Workload::Unseal) => "vaultd unseal".into(),
        (_, Workload::Put) => "vaultd put".into(),
        (_, Workload::TransitSeal) => "vaultd transit seal".into(),
        (_, Workload::TransitUnseal) => "vaultd transit unseal".into(),
        (_, Workload::Mix) => "vaultd 90% unseal / 10% put".into(),
    }
}

fn print_report(r: &Report, setup_only: bool) {
    println!(
        "vault-load: {}, {} connections, {}-byte values, {} tokens in {} tenants",
        what(r),
        r.concurrency,
        r.value_size,
        r.tokens,
        r.tenants
    );
    if let Some(ms) = r.start_to_serving_ms {
        println!("  start      {ms:.1} ms from spawn to unsealed and serving");
    }
    if let Some(s) = &r.setup {
        println!(
            "  set-up     {} tenants, {} tokens in {:.1} s ({:.0} tokens/s)",
            s.tenants, s.tokens, s.secs, s.tokens_per_sec
        );
    }
    if !setup_only {
        let paced = r
            .rate
            .map(|rate| format!(" (paced at {rate:.0})"))
            .unwrap_or_default();
        println!(
            "  ops        {} in {:.1} s: {:.0} ops/s{paced}, {} errors",
            r.ops, r.secs, r.ops_per_sec, r.errors
        );
        println!("  latency    {}", r.latency.line());
        for (name, l) in [("read", &r.read), ("write", &r.write)] {
            if let Some(l) = l {
                println!("  {name:<10} {} ops, {}", l.ops, l.line());
            }
        }
        for e in &r.first_errors {
            println!("  error      {e}");
        }
        if let (Some(secs), Some(per_op), Some(cores)) =
            (r.daemon_cpu_seconds, r.daemon_cpu_us_per_op, r.daemon_cores)
        {
            let pid = r
                .daemon
                .map_or(String::new(), |m| format!(", pid {}", m.pid));
            let below = match r.daemon_cpu_processes {
                Some(n) if n > 1 => format!(" and {} processes below it", n - 1),
                _ => String::new(),
            };
            println!(
                "  cpu        daemon CPU: {secs:.2} s over {} ops = {per_op:.1} µs/op; \
                 {cores:.2} cores used{pid}{below}",
                r.ops
            );
        }
    }
    if let Some(m) = &r.daemon {
        println!(
            "  memory     pid {}: peak RSS (VmHWM) {:.1} MiB, RSS {:.1} MiB",
            m.pid,
            m.vm_hwm_kib as f64 / 1024.0,
            m.vm_rss_kib as f64 / 1024.0
        );
    }
}
