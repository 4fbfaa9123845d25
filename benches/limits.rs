//! Micro benches of the per-caller limits on the request path (docs/threat-model.md, "Quotas";
//! docs/alarms.md): what one authorized request pays for the quotas and the exfiltration brake
//! of its rule, and what it pays when its rule has none.
//!
//! - `policy_lookup/none`: `Policy::quotas` and `Policy::brakes` for a rule without either;
//! - `quota/spend_2`: one request against two composed quotas (per second and per day);
//! - `brake/counted`: a token the caller already used in the window (the common case);
//! - `brake/new_of_1000`: the 1,000 tokens of a budget of 10,000, in turn.
//!
//! `cargo bench --bench limits` (add `-- --quick` for a fast pass). CI only compiles this.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vaultd::policy::{Brake, Capability, Identity, Policy, Quota, Rule, TenantPattern};
use vaultd::server::{CallerLimits, Callers};

fn rule(quotas: Vec<Quota>, brakes: Vec<Brake>) -> Policy {
    Policy::new(vec![Rule {
        name: "platform".into(),
        uids: vec![1000],
        gids: vec![],
        subjects: vec![],
        capabilities: vec![Capability::TokenUnseal, Capability::TokenRead],
        tenants: vec![TenantPattern::Any],
        quotas,
        brakes,
    }])
}

fn callers() -> Arc<Callers> {
    Arc::new(Callers::new(CallerLimits {
        max_connections: 128,
        refused_per_window: 120,
        refused_window: Duration::from_secs(60),
    }))
}

fn limits(c: &mut Criterion) {
    let who = Identity::local(1000, 1000, None);
    let unseal = [Capability::TokenUnseal];
    let plain = rule(vec![], vec![]);
    c.bench_function("policy_lookup/none", |b| {
        b.iter(|| {
            let q = plain.quotas(black_box(&who), &unseal);
            let k = plain.brakes(black_box(&who), &unseal, "acme");
            (q.len(), k.len())
        })
    });

    let quota = |requests, secs| Quota {
        capabilities: vec![Capability::TokenUnseal],
        requests,
        window: Duration::from_secs(secs),
    };
    // Large enough never to run out during the bench: what is measured is the bookkeeping.
    let quoted = rule(vec![quota(u32::MAX, 1), quota(u32::MAX, 86_400)], vec![]);
    let limited = callers();
    c.bench_function("quota/spend_2", |b| {
        b.iter(|| {
            let quotas = quoted.quotas(&who, &unseal);
            limited.spend(black_box(&who), &quotas).expect("room")
        })
    });

    let braked = rule(
        vec![],
        vec![Brake {
            rule: "platform".into(),
            capabilities: vec![Capability::TokenUnseal],
            tenants: vec![TenantPattern::Any],
            distinct_tokens: 10_000,
            window: Duration::from_secs(3600),
        }],
    );
    let counted = callers();
    let ids: Vec<String> = (0..1000).map(|i| format!("consent-{i}")).collect();
    c.bench_function("brake/counted", |b| {
        b.iter(|| {
            let brakes = braked.brakes(&who, &unseal, "acme");
            counted
                .brake(black_box(&who), &brakes, "acme", "consent-1")
                .expect("within")
        })
    });
    let mut i = 0;
    c.bench_function("brake/new_of_1000", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            let brakes = braked.brakes(&who, &unseal, "acme");
            counted
                .brake(black_box(&who), &brakes, "acme", &ids[i])
                .expect("within")
        })
    });
}

criterion_group!(benches, limits);
criterion_main!(benches);
