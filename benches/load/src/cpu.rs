//! CPU time of the server under test, from /proc: user + system time of a process and of every
//! process below it, so that a multi-process server (PostgreSQL serves each connection from a
//! child of the postmaster) is measured whole. For vaultd and redis the tree is the one process.
//!
//! Each process counts `utime + stime + cutime + cstime` (fields 14–17 of /proc/PID/stat): a
//! child that exits during the measured phase moves its time into its parent's `cutime` and
//! `cstime` when it is reaped, so the difference of two samples still holds it.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

/// Clock ticks per second if `getconf CLK_TCK` cannot be run: USER_HZ, the unit of
/// /proc/PID/stat, is 100 on x86, arm, risc-v and most other architectures Linux runs on.
/// (`sysconf(_SC_CLK_TCK)` would ask libc directly, but needs `unsafe`, forbidden here.)
const DEFAULT_TICKS_PER_SEC: u64 = 100;

/// The measured process and the unit of its clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub(crate) pid: u32,
    ticks_per_sec: u64,
}

/// CPU consumed by a process tree up to one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    ticks: u64,
    processes: usize,
    at: Instant,
}

/// CPU used between two samples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Used {
    pub(crate) seconds: f64,
    pub(crate) wall_seconds: f64,
    /// Processes in the tree at the end (1 for vaultd).
    pub(crate) processes: usize,
}

impl Clock {
    /// Finds the tick rate once (`getconf CLK_TCK`) and checks that `pid` can be read.
    pub(crate) fn new(pid: u32) -> anyhow::Result<Self> {
        let ticks_per_sec = match getconf_clk_tck() {
            Some(n) => n,
            None => {
                eprintln!(
                    "vault-load: `getconf CLK_TCK` failed; assuming {DEFAULT_TICKS_PER_SEC} \
                     clock ticks/s for the daemon's CPU time"
                );
                DEFAULT_TICKS_PER_SEC
            }
        };
        let clock = Self { pid, ticks_per_sec };
        clock.sample()?;
        Ok(clock)
    }

    /// The CPU ticks `pid` and its live descendants have used so far.
    pub(crate) fn sample(&self) -> anyhow::Result<Sample> {
        let at = Instant::now();
        let root = read_stat(self.pid)
            .with_context(|| format!("reading the CPU time of pid {}", self.pid))?;
        let mut ticks = root.ticks;
        let mut processes = 1;
        let children = children_by_parent()?;
        let mut todo: Vec<u32> = children.get(&self.pid).cloned().unwrap_or_default();
        // A pid reused while /proc was listed could make a loop: visit each once.
        let mut seen = HashSet::from([self.pid]);
        while let Some(pid) = todo.pop() {
            if !seen.insert(pid) {
                continue;
            }
            // A process may exit between the listing and the read: its time is then in its
            // parent's cutime/cstime (once reaped), not lost.
            if let Ok(stat) = read_stat(pid) {
                ticks += stat.ticks;
                processes += 1;
            }
            todo.extend(children.get(&pid).into_iter().flatten());
        }
        Ok(Sample {
            ticks,
            processes,
            at,
        })
    }

    /// What was used from `from` to `to`.
    pub(crate) fn used(&self, from: Sample, to: Sample) -> Used {
        Used {
            seconds: to.ticks.saturating_sub(from.ticks) as f64 / self.ticks_per_sec as f64,
            wall_seconds: to.at.saturating_duration_since(from.at).as_secs_f64(),
            processes: to.processes,
        }
    }
}

fn getconf_clk_tck() -> Option<u64> {
    let out = Command::new("getconf").arg("CLK_TCK").output().ok()?;
    let n: u64 = String::from_utf8(out.stdout).ok()?.trim().parse().ok()?;
    (out.status.success() && n > 0).then_some(n)
}

/// The fields of /proc/PID/stat used here.
struct Stat {
    ppid: u32,
    /// utime + stime + cutime + cstime.
    ticks: u64,
}

fn read_stat(pid: u32) -> anyhow::Result<Stat> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat(&text).with_context(|| format!("parsing {path}"))
}

/// `pid (comm) state ppid … utime stime cutime cstime …`; `comm` may hold spaces and
/// parentheses, so the fields are counted from the last `)`.
fn parse_stat(text: &str) -> anyhow::Result<Stat> {
    let Some((_, rest)) = text.rsplit_once(')') else {
        bail!("no `)` after the command name");
    };
    // rest[0] is field 3 (state), so field n is rest[n - 3].
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        let value = fields.get(n - 3).with_context(|| format!("no field {n}"))?;
        value
            .parse()
            .with_context(|| format!("field {n} is {value:?}"))
    };
    Ok(Stat {
        ppid: u32::try_from(field(4)?).context("ppid out of range")?,
        ticks: field(14)? + field(15)? + field(16)? + field(17)?,
    })
}

/// Every process's children, from the ppid of each /proc/*/stat.
fn children_by_parent() -> anyhow::Result<HashMap<u32, Vec<u32>>> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in fs::read_dir("/proc").context("listing /proc")? {
        let Some(pid) = entry
            .ok()
            .and_then(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        else {
            continue;
        };
        if let Ok(stat) = read_stat(pid) {
            children.entry(stat.ppid).or_default().push(pid);
        }
    }
    Ok(children)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_and_parentheses_in_comm() {
        let line = "4242 (post gres) (x)) S 17 4242 4242 0 -1 4194560 1 0 0 0 \
                    120 30 7 3 20 0 1 0 100 1000 10";
        let stat = parse_stat(line).expect("a valid stat line");
        assert_eq!(stat.ppid, 17);
        assert_eq!(stat.ticks, 160);
        assert!(parse_stat("4242 (x) S 17").is_err());
    }

    #[test]
    fn samples_this_process() {
        let clock = Clock::new(std::process::id()).expect("our own stat is readable");
        let a = clock.sample().expect("sample");
        let b = clock.sample().expect("sample");
        let used = clock.used(a, b);
        assert!(used.seconds >= 0.0 && used.wall_seconds >= 0.0);
        assert!(used.processes >= 1);
    }
}
