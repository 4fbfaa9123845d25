//! Per-caller limits (`docs/threat-model.md`, "Limits"): how many connections one caller holds at
//! once, how many refused requests (denied, malformed, unknown endpoint) it may send before
//! it is answered `429 rate_limited` without doing anything, and the request quotas of its
//! policy rules. A caller is a [`Principal`]: a uid, or a certificate subject.
//!
//! Refused requests each get an audit entry while the caller is within its budget (a token
//! bucket of `refused_per_window`, refilled over `refused_window`). Beyond it, every request of
//! the caller is answered 429 with `Retry-After` and gets no entry of its own: the caller's 429s
//! are counted, and [`Callers::take_summaries`] (called once per window, and at shutdown) turns
//! each caller's count into one `limits.rate_limited` entry. So the log stays complete, one
//! entry per caller per window, and bounded. A request past one of its quotas is answered and
//! counted the same way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use vault_client::Timestamp;

use crate::policy::{Brake, BrakeId, Identity, Principal, Quota, QuotaId};

/// The limits, from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerLimits {
    /// Most connections one caller holds at once, over every listener.
    pub max_connections: usize,
    /// Refused requests a caller may send per window, each with its own audit entry.
    pub refused_per_window: u32,
    /// The window: the budget refills over it, and 429s are summarized once per window.
    pub refused_window: Duration,
}

/// What one caller holds and has spent.
struct Caller {
    connections: usize,
    /// Refused requests it may still send (a token bucket, refilled continuously).
    budget: f64,
    refilled: Instant,
    /// Requests answered 429 since the last summary, the first and last time, and the identity
    /// they came with (the summary entry names it).
    limited: u64,
    limited_since: Option<Timestamp>,
    limited_until: Option<Timestamp>,
    identity: Option<Identity>,
    /// What is left of each quota of its rules it has used.
    quotas: HashMap<QuotaId, Bucket>,
    /// The tokens it used under each brake of its rules (`docs/alarms.md`).
    brakes: HashMap<BrakeId, Seen>,
}

/// The distinct tokens one caller used under one brake within its window, each (as
/// `tenant/token`: ids hold no `/`) with the last time it used it.
struct Seen {
    tokens: HashMap<String, Instant>,
    window: Duration,
    /// No token leaves the window before this: until then a prune would find nothing, so a
    /// full brake refuses in constant time instead of rescanning its tokens.
    next_expiry: Option<Instant>,
    /// When the alarm of the current overrun was raised: one alarm per window.
    alarmed: Option<Instant>,
}

impl Seen {
    /// Forgets the tokens last used a window ago or longer, unless none can have left yet.
    fn prune(&mut self, now: Instant) {
        if self.next_expiry.is_some_and(|at| now < at) {
            return;
        }
        let window = self.window;
        self.tokens
            .retain(|_, used| now.duration_since(*used) < window);
        self.next_expiry = self.tokens.values().min().map(|used| *used + window);
    }

    /// Whether `key` was used within the window.
    fn counts(&self, key: &str, now: Instant) -> bool {
        self.tokens
            .get(key)
            .is_some_and(|used| now.duration_since(*used) < self.window)
    }
}

/// A request a brake refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Braked {
    /// Until the oldest counted token leaves the window.
    pub wait: Duration,
    /// The brake's rule, budget and window, on the first refusal of an overrun in a window:
    /// the caller raises the alarm.
    pub alarm: Option<BrakeAlarm>,
}

/// What an `alarm.exfiltration_brake` entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrakeAlarm {
    /// The rule and the brake's place in it.
    pub rule: String,
    /// See `rule`.
    pub brake: usize,
    /// The budget.
    pub distinct_tokens: u32,
    /// The window.
    pub window: Duration,
}

/// A token bucket: `level` of `capacity` left, refilling at `capacity` per `window`.
struct Bucket {
    level: f64,
    capacity: f64,
    window: Duration,
    refilled: Instant,
}

impl Bucket {
    fn full(quota: &Quota, now: Instant) -> Self {
        Self {
            level: f64::from(quota.requests),
            capacity: f64::from(quota.requests),
            window: quota.window,
            refilled: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let rate = self.capacity / self.window.as_secs_f64();
        self.level = (self.level + now.duration_since(self.refilled).as_secs_f64() * rate)
            .min(self.capacity);
        self.refilled = now;
    }

    /// How long until one more request fits.
    fn wait(&self) -> Duration {
        Duration::from_secs_f64(
            ((1.0 - self.level).max(0.0) * self.window.as_secs_f64() / self.capacity).max(0.0),
        )
    }
}

/// The 429s of one caller over one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Who (the identity of its last 429).
    pub identity: Identity,
    /// Requests answered 429.
    pub count: u64,
    /// The first and the last of them.
    pub from: Timestamp,
    /// See `from`.
    pub to: Timestamp,
}

/// Every caller's connections and budget.
pub struct Callers {
    limits: CallerLimits,
    callers: Mutex<HashMap<Principal, Caller>>,
}

/// One connection counted against its caller; dropping it gives the slot back.
pub struct Connection {
    callers: Arc<Callers>,
    principal: Principal,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut callers = self.callers.lock();
        if let Some(c) = callers.get_mut(&self.principal) {
            c.connections = c.connections.saturating_sub(1);
        }
    }
}

impl Callers {
    /// No caller holds or has spent anything yet.
    pub fn new(limits: CallerLimits) -> Self {
        Self {
            limits,
            callers: Mutex::new(HashMap::new()),
        }
    }

    /// The window of the refused-request budget.
    pub fn window(&self) -> Duration {
        self.limits.refused_window
    }

    /// Counts a new connection of `identity`; `Err` with what it holds when that is the cap.
    pub fn connect(self: &Arc<Self>, identity: &Identity) -> Result<Connection, usize> {
        let principal = identity.principal();
        let mut callers = self.lock();
        let c = callers
            .entry(principal.clone())
            .or_insert_with(|| self.fresh());
        if c.connections >= self.limits.max_connections {
            return Err(c.connections);
        }
        c.connections += 1;
        drop(callers);
        Ok(Connection {
            callers: self.clone(),
            principal,
        })
    }

    /// Whether a request of `identity` may be served: `Err` with the time until its budget has
    /// room again when it is spent, and then the request is counted for the next summary.
    pub(crate) fn admit(&self, identity: &Identity) -> Result<(), Duration> {
        let mut callers = self.lock();
        let Some(c) = callers.get_mut(&identity.principal()) else {
            return Ok(());
        };
        self.refill(c);
        if c.budget >= 1.0 {
            return Ok(());
        }
        c.limit(identity);
        let per_token = self.limits.refused_window.as_secs_f64()
            / f64::from(self.limits.refused_per_window.max(1));
        Err(Duration::from_secs_f64((1.0 - c.budget) * per_token))
    }

    /// Spends one request of every quota in `quotas` (`Policy::quotas`) for `identity`, or
    /// none of them: `Err` with the time until every one has room when one is spent, and then
    /// the request is counted for the next summary. Quotas compose: the request must fit all.
    pub fn spend(&self, identity: &Identity, quotas: &[(QuotaId, &Quota)]) -> Result<(), Duration> {
        if quotas.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        let mut callers = self.lock();
        let c = callers
            .entry(identity.principal())
            .or_insert_with(|| self.fresh());
        let mut wait = Duration::ZERO;
        for (id, quota) in quotas {
            let bucket = c
                .quotas
                .entry(*id)
                .or_insert_with(|| Bucket::full(quota, now));
            bucket.refill(now);
            if bucket.level < 1.0 {
                wait = wait.max(bucket.wait());
            }
        }
        if wait > Duration::ZERO {
            c.limit(identity);
            return Err(wait);
        }
        for (id, _) in quotas {
            if let Some(bucket) = c.quotas.get_mut(id) {
                bucket.level -= 1.0;
            }
        }
        Ok(())
    }

    /// Counts `token` of `tenant` against every brake in `brakes` (`Policy::brakes`) for
    /// `identity`, or none of them: `Err` when it would be one distinct token more than a
    /// brake allows in its window, and then the request is counted for the next summary.
    pub fn brake(
        &self,
        identity: &Identity,
        brakes: &[(BrakeId, &Brake)],
        tenant: &str,
        token: &str,
    ) -> Result<(), Braked> {
        if brakes.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        let key = format!("{tenant}/{token}");
        let mut callers = self.lock();
        let c = callers
            .entry(identity.principal())
            .or_insert_with(|| self.fresh());
        let mut refused: Option<(Duration, BrakeId, &Brake)> = None;
        for (id, brake) in brakes {
            let seen = c.brakes.entry(*id).or_insert_with(|| Seen {
                tokens: HashMap::new(),
                window: brake.window,
                next_expiry: None,
                alarmed: None,
            });
            let budget = brake.distinct_tokens as usize;
            if seen.counts(&key, now) || seen.tokens.len() < budget {
                continue;
            }
            // Full: only a token that left the window makes room.
            seen.prune(now);
            if seen.tokens.len() >= budget {
                let wait = seen
                    .next_expiry
                    .map_or(brake.window, |at| at.saturating_duration_since(now));
                if refused.is_none_or(|(w, ..)| wait > w) {
                    refused = Some((wait, *id, brake));
                }
            }
        }
        if let Some((wait, id, brake)) = refused {
            c.limit(identity);
            let seen = c.brakes.get_mut(&id).expect("entered above");
            let alarm = seen
                .alarmed
                .is_none_or(|at| now.duration_since(at) >= brake.window)
                .then(|| {
                    seen.alarmed = Some(now);
                    BrakeAlarm {
                        rule: brake.rule.clone(),
                        brake: id.brake,
                        distinct_tokens: brake.distinct_tokens,
                        window: brake.window,
                    }
                });
            return Err(Braked { wait, alarm });
        }
        for (id, _) in brakes {
            if let Some(seen) = c.brakes.get_mut(id) {
                seen.tokens.insert(key.clone(), now);
            }
        }
        Ok(())
    }

    /// Spends one unit of the budget of `identity`: its request was refused.
    pub fn refused(&self, identity: &Identity) {
        let mut callers = self.lock();
        let c = callers
            .entry(identity.principal())
            .or_insert_with(|| self.fresh());
        self.refill(c);
        c.budget = (c.budget - 1.0).max(0.0);
    }

    /// Every caller's 429s since the last call, and forgets callers that hold and owe nothing.
    pub(crate) fn take_summaries(&self) -> Vec<Summary> {
        let mut callers = self.lock();
        let mut out = Vec::new();
        for c in callers.values_mut() {
            let (Some(from), Some(to), Some(identity)) = (
                c.limited_since.take(),
                c.limited_until.take(),
                c.identity.take(),
            ) else {
                continue;
            };
            out.push(Summary {
                identity,
                count: std::mem::take(&mut c.limited),
                from,
                to,
            });
        }
        let full = f64::from(self.limits.refused_per_window);
        let now = Instant::now();
        callers.retain(|_, c| {
            self.refill(c);
            c.quotas.retain(|_, b| {
                b.refill(now);
                b.level < b.capacity
            });
            c.brakes.retain(|_, seen| {
                seen.next_expiry = None;
                seen.prune(now);
                !seen.tokens.is_empty()
                    || seen
                        .alarmed
                        .is_some_and(|at| now.duration_since(at) < seen.window)
            });
            c.connections > 0 || c.budget < full || !c.quotas.is_empty() || !c.brakes.is_empty()
        });
        out
    }

    /// Puts back summaries that could not be written, for the next window.
    pub fn restore(&self, summaries: Vec<Summary>) {
        let mut callers = self.lock();
        for s in summaries {
            let c = callers
                .entry(s.identity.principal())
                .or_insert_with(|| self.fresh());
            c.limited += s.count;
            c.limited_since = Some(c.limited_since.map_or(s.from, |f| f.min(s.from)));
            c.limited_until = Some(c.limited_until.map_or(s.to, |t| t.max(s.to)));
            c.identity.get_or_insert(s.identity);
        }
    }

    fn fresh(&self) -> Caller {
        Caller {
            connections: 0,
            budget: f64::from(self.limits.refused_per_window),
            refilled: Instant::now(),
            limited: 0,
            limited_since: None,
            limited_until: None,
            identity: None,
            quotas: HashMap::new(),
            brakes: HashMap::new(),
        }
    }

    fn refill(&self, c: &mut Caller) {
        let now = Instant::now();
        let full = f64::from(self.limits.refused_per_window);
        let rate = full / self.limits.refused_window.as_secs_f64();
        c.budget = (c.budget + now.duration_since(c.refilled).as_secs_f64() * rate).min(full);
        c.refilled = now;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Principal, Caller>> {
        self.callers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Caller {
    /// Counts a request answered 429 for the next summary.
    fn limit(&mut self, identity: &Identity) {
        let now = Timestamp::now();
        self.limited += 1;
        self.limited_since.get_or_insert(now);
        self.limited_until = Some(now);
        self.identity = Some(identity.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn callers(max_connections: usize, refused: u32) -> Arc<Callers> {
        Arc::new(Callers::new(CallerLimits {
            max_connections,
            refused_per_window: refused,
            refused_window: Duration::from_secs(3600),
        }))
    }

    #[test]
    fn a_caller_holds_at_most_its_connections_and_others_are_not_counted_with_it() {
        let callers = callers(2, 10);
        let (a, b) = (
            Identity::local(1000, 1000, None),
            Identity::local(1001, 1000, None),
        );
        let held = [
            callers.connect(&a).expect("1"),
            callers.connect(&a).expect("2"),
        ];
        assert_eq!(callers.connect(&a).err(), Some(2));
        // Another process of the same uid is the same caller; another uid is not.
        assert!(callers.connect(&Identity::local(1000, 0, Some(7))).is_err());
        let other = callers.connect(&b).expect("another uid");
        drop(held);
        callers.connect(&a).expect("free again");
        drop(other);
    }

    #[test]
    fn refusals_beyond_the_budget_are_limited_and_summarized_once() {
        let callers = callers(8, 3);
        let who = Identity::local(1000, 1000, None);
        for _ in 0..3 {
            assert!(callers.admit(&who).is_ok());
            callers.refused(&who);
        }
        for _ in 0..5 {
            let wait = callers.admit(&who).expect_err("over budget");
            assert!(
                wait > Duration::ZERO && wait <= Duration::from_secs(1200),
                "{wait:?}"
            );
        }
        // Another caller is not limited by it.
        assert!(callers.admit(&Identity::local(1001, 1000, None)).is_ok());
        let summaries = callers.take_summaries();
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].count, 5);
        assert_eq!(summaries[0].identity, who);
        assert!(callers.take_summaries().is_empty(), "counted once");
        callers.restore(summaries);
        assert_eq!(
            callers.take_summaries()[0].count,
            5,
            "put back after a failed write"
        );
    }

    #[test]
    fn quotas_compose_and_count_per_caller() {
        use crate::policy::{Capability, Policy, Rule, TenantPattern};
        let quota = |requests, secs| Quota {
            capabilities: vec![Capability::TokenUnseal],
            requests,
            window: Duration::from_secs(secs),
        };
        let policy = Policy::new(vec![Rule {
            name: "platform".into(),
            uids: vec![],
            gids: vec![2000],
            subjects: vec![],
            capabilities: vec![Capability::TokenUnseal, Capability::TokenRead],
            tenants: vec![TenantPattern::Any],
            // 3 a second and 5 an hour: the hour's is spent first.
            quotas: vec![quota(3, 1), quota(5, 3600)],
            brakes: vec![],
        }]);
        let callers = callers(8, 10);
        let (a, b) = (
            Identity::local(1000, 2000, None),
            Identity::local(1001, 2000, None),
        );
        let unseal =
            |who: &Identity| callers.spend(who, &policy.quotas(who, &[Capability::TokenUnseal]));
        for _ in 0..3 {
            unseal(&a).expect("within both");
        }
        let wait = unseal(&a).expect_err("the second's spent");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        std::thread::sleep(Duration::from_millis(700));
        unseal(&a).expect("refilled by two");
        unseal(&a).expect("the fifth");
        let wait = unseal(&a).expect_err("the hour's spent");
        assert!(wait > Duration::from_secs(600), "{wait:?}");
        // Reads count against nothing; another uid of the same group has its own quota.
        let read = policy.quotas(&a, &[Capability::TokenRead]);
        assert!(read.is_empty());
        callers.spend(&a, &read).expect("no quota");
        unseal(&b).expect("its own bucket");
        // Both refusals are summarized, as one count of the caller.
        let summaries = callers.take_summaries();
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].count, 2);
        // A spent quota is remembered across summaries (a caller is not forgotten while it owes).
        assert!(unseal(&a).is_err());
    }

    #[test]
    fn a_brake_counts_distinct_tokens_in_a_sliding_window() {
        use crate::policy::{Brake, Capability, Policy, Rule, TenantPattern};
        let policy = Policy::new(vec![Rule {
            name: "app".into(),
            uids: vec![1000],
            gids: vec![],
            subjects: vec![],
            capabilities: vec![Capability::TokenUnseal],
            tenants: vec![TenantPattern::Any],
            quotas: vec![],
            brakes: vec![Brake {
                rule: "app".into(),
                capabilities: vec![Capability::TokenUnseal],
                tenants: vec![TenantPattern::Any],
                distinct_tokens: 2,
                window: Duration::from_millis(600),
            }],
        }]);
        let callers = callers(8, 10);
        let who = Identity::local(1000, 1000, None);
        let brakes = policy.brakes(&who, &[Capability::TokenUnseal], "acme");
        let unseal = |token: &str| callers.brake(&who, &brakes, "acme", token);
        unseal("t1").expect("first");
        std::thread::sleep(Duration::from_millis(300));
        unseal("t2").expect("second");
        unseal("t1").expect("counted already");
        let braked = unseal("t3").expect_err("a third");
        assert!(braked.alarm.is_some(), "the first refusal raises the alarm");
        assert!(
            braked.wait <= Duration::from_millis(600),
            "{:?}",
            braked.wait
        );
        assert!(
            unseal("t4").expect_err("a fourth").alarm.is_none(),
            "one alarm"
        );
        // Another tenant's token of the same id is another token.
        assert!(callers.brake(&who, &brakes, "globex", "t1").is_err());
        // t1 was used again at 300 ms, t2 at 300 ms: both leave the window at 900 ms.
        std::thread::sleep(Duration::from_millis(650));
        unseal("t3").expect("room again");
        unseal("t4").expect("and again");
        assert!(unseal("t5").is_err());
    }
}
