//! `--rate`: each connection issues its share of the total rate at evenly spaced instants.
//!
//! A connection that falls behind (a slow answer, a stall of the server) makes up at most
//! [`MAX_LAG`] of missed ticks, back to back, and drops the rest: after a long stall the load
//! does not arrive as a burst of everything owed, and over a run the rate holds as long as the
//! server keeps up.

use std::time::Duration;

use tokio::time::Instant;

/// How far a connection may fall behind its schedule and still catch up.
pub(crate) const MAX_LAG: Duration = Duration::from_millis(50);

/// The schedule of one connection.
pub(crate) struct Pacer {
    period: Duration,
    next: Instant,
}

impl Pacer {
    /// Connection `index` of `connections`, sharing `total_per_sec` operations per second:
    /// ticks every `connections / total_per_sec` seconds, the connections' first ticks
    /// spread over one period from `start`.
    pub(crate) fn new(
        total_per_sec: f64,
        connections: usize,
        index: usize,
        start: Instant,
    ) -> Self {
        let period = Duration::from_secs_f64(connections as f64 / total_per_sec);
        let offset = period.mul_f64(index as f64 / connections as f64);
        Self {
            period,
            next: start + offset,
        }
    }

    /// Waits for this connection's next tick.
    pub(crate) async fn tick(&mut self) {
        let now = Instant::now();
        let due = self.advance(now);
        if due > now {
            tokio::time::sleep_until(due).await;
        }
    }

    /// The instant of the next tick (`now` or earlier: at once), and the schedule moved on.
    fn advance(&mut self, now: Instant) -> Instant {
        if now > self.next + MAX_LAG {
            self.next = now - MAX_LAG;
        }
        let due = self.next;
        self.next += self.period;
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paces_evenly_and_bounds_the_catch_up() {
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        // 4 connections sharing 400 ops/s: 100 ops/s each; connection 2 starts 5 ms late.
        let mut pacer = Pacer::new(400.0, 4, 2, start);
        assert_eq!(pacer.period, Duration::from_millis(10));
        let mut now = start;
        for n in 0..10 {
            now = pacer.advance(now).max(now);
            assert_eq!(now, ms(5 + 10 * n));
        }
        // A 1 s stall: the ticks of the last MAX_LAG (5) and the one due now are made up at
        // once, not the 100 missed; then the schedule goes on from there.
        now += Duration::from_secs(1);
        let caught_up = (0..10).take_while(|_| pacer.advance(now) <= now).count();
        assert_eq!(caught_up, 6);
        assert_eq!(pacer.next, now + Duration::from_millis(20));
    }
}
