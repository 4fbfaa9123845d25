//! Who may do what (SPEC §5). A caller on the Unix socket is identified by the kernel
//! (SO_PEERCRED: uid, gid, pid), a caller on the TCP listener by its verified client
//! certificate (`docs/tls.md`); rules in the config map uids, gids, user and group names, and
//! certificate subjects to capabilities, each limited to tenant patterns, and optionally to
//! request quotas. Everything not granted is denied.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// Who is calling: a local process or the holder of a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A caller on the TCP listener, named by its verified client certificate.
    Certificate(SubjectName),
    /// A caller on the Unix socket, as the kernel reported it at connect time.
    Local(Peer),
}

/// A local caller's credentials (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Effective user id.
    pub uid: u32,
    /// Effective (primary) group id.
    pub gid: u32,
    /// Process id at connect time (informational: pids are reused, so never authorized on).
    pub pid: Option<i32>,
}

impl Identity {
    /// A local caller.
    pub fn local(uid: u32, gid: u32, pid: Option<i32>) -> Self {
        Self::Local(Peer { uid, gid, pid })
    }

    /// Whom the per-caller limits count this caller as: its uid (every process and group of a
    /// user together), or its certificate's subject.
    pub(crate) fn principal(&self) -> Principal {
        match self {
            Self::Certificate(subject) => Principal::Subject(subject.clone()),
            Self::Local(peer) => Principal::Uid(peer.uid),
        }
    }
}

/// A caller as the per-caller limits count it (`docs/threat-model.md`, "Limits").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Principal {
    /// A local user.
    Uid(u32),
    /// A certificate subject.
    Subject(SubjectName),
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uid(uid) => write!(f, "uid={uid}"),
            Self::Subject(subject) => write!(f, "cert={subject}"),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Certificate(subject) => write!(f, "cert={subject}"),
            Self::Local(peer) => {
                write!(f, "uid={} gid={}", peer.uid, peer.gid)?;
                if let Some(pid) = peer.pid {
                    write!(f, " pid={pid}")?;
                }
                Ok(())
            }
        }
    }
}

/// The name of a certificate caller (`docs/tls.md`: the Subject CN, else the first DNS SAN):
/// 1–128 bytes of `A-Z a-z 0-9 . _ - @`, so it prints in logs and audit entries as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubjectName(Arc<str>);

impl SubjectName {
    /// Longest name accepted.
    pub(crate) const MAX_LEN: usize = 128;

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SubjectName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
        if ok {
            Ok(Self(Arc::from(s)))
        } else {
            Err(format!(
                "{:?} is not a subject name: 1-{} characters of A-Z a-z 0-9 . _ - @",
                s.chars().take(Self::MAX_LEN).collect::<String>(),
                Self::MAX_LEN
            ))
        }
    }
}

impl fmt::Display for SubjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! capabilities {
    ($($variant:ident = $name:literal, $tenant_scoped:literal;)*) => {
        /// A capability of SPEC §5.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Capability {
            $(#[doc = $name] $variant,)*
        }

        impl Capability {
            /// Every capability.
            pub const ALL: &[Capability] = &[$(Capability::$variant,)*];

            /// The config-file name, e.g. `token:unseal`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Capability::$variant => $name,)*
                }
            }

            /// Whether holding this capability grants `wanted`: itself, and `keys:read` also
            /// `keys:metadata` (its half without the decoy flags: `docs/operator-guide.md`).
            pub(crate) fn grants(self, wanted: Capability) -> bool {
                self == wanted || (self == Capability::KeysRead && wanted == Capability::KeysMetadata)
            }

            /// Whether grants of this capability are limited by tenant patterns.
            pub(crate) fn tenant_scoped(self) -> bool {
                match self {
                    $(Capability::$variant => $tenant_scoped,)*
                }
            }
        }
    };
}

capabilities! {
    AuditArchive = "audit:archive", false;
    AuditRead = "audit:read", true;
    KeysMetadata = "keys:metadata", true;
    KeysRead = "keys:read", true;
    KeysRotate = "keys:rotate", true;
    SysBackup = "sys:backup", false;
    SysInit = "sys:init", false;
    SysSeal = "sys:seal", false;
    SysStatus = "sys:status", false;
    SysUnseal = "sys:unseal", false;
    TenantCreate = "tenant:create", true;
    TenantDestroy = "tenant:destroy", true;
    TokenDelete = "token:delete", true;
    TokenRead = "token:read", true;
    TokenSeal = "token:seal", true;
    TokenUnseal = "token:unseal", true;
    TransitSeal = "transit:seal", true;
    TransitUnseal = "transit:unseal", true;
}

impl FromStr for Capability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown capability {s:?}"))
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A tenant pattern: `*` (any), `prefix*`, or an exact tenant id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantPattern {
    /// Every tenant.
    Any,
    /// Tenants whose id is exactly this.
    Exact(String),
    /// Tenants whose id starts with this.
    Prefix(String),
}

impl TenantPattern {
    fn matches(&self, tenant: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(t) => t == tenant,
            Self::Prefix(p) => tenant.starts_with(p.as_str()),
        }
    }
}

impl FromStr for TenantPattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(Self::Any);
        }
        let (body, prefix) = match s.strip_suffix('*') {
            Some(body) => (body, true),
            None => (s, false),
        };
        crate::ids::TenantId::parse(body)
            .map_err(|_| format!("bad tenant pattern {s:?}: use *, prefix* or an id"))?;
        Ok(if prefix {
            Self::Prefix(body.to_owned())
        } else {
            Self::Exact(body.to_owned())
        })
    }
}

/// One rule: who (any listed uid, gid or certificate subject) gets which capabilities on which
/// tenants.
#[derive(Debug, Clone)]
pub struct Rule {
    /// A label for logs and audit.
    pub name: String,
    /// Matching user ids (local callers only).
    pub uids: Vec<u32>,
    /// Matching primary group ids (local callers only).
    pub gids: Vec<u32>,
    /// Matching certificate subjects, exact names (certificate callers only).
    pub subjects: Vec<SubjectName>,
    /// Granted capabilities.
    pub capabilities: Vec<Capability>,
    /// Tenants the tenant-scoped capabilities apply to.
    pub tenants: Vec<TenantPattern>,
    /// Request quotas on some of the granted capabilities, each counted per caller.
    pub quotas: Vec<Quota>,
    /// Exfiltration brakes: budgets of distinct tokens per caller (`docs/alarms.md`).
    pub brakes: Vec<Brake>,
}

/// An exfiltration brake (`docs/alarms.md`): each caller a rule names may use `capabilities`
/// on at most `distinct_tokens` different tokens of `tenants` within any `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brake {
    /// The rule's name, for the alarm.
    pub rule: String,
    /// The capabilities it counts (token capabilities only).
    pub capabilities: Vec<Capability>,
    /// The tenants it counts tokens of.
    pub tenants: Vec<TenantPattern>,
    /// Distinct tokens per window (at least 1).
    pub distinct_tokens: u32,
    /// The sliding window.
    pub window: Duration,
}

/// Which brake of the policy: its rule and its place in the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BrakeId {
    /// The rule's place in the policy.
    pub rule: usize,
    /// The brake's place in the rule.
    pub brake: usize,
}

/// A request quota (`docs/threat-model.md`, "Quotas"): each caller a rule names may make
/// `requests` requests that use any of `capabilities` per `window`, as a bucket of `requests`
/// that refills at `requests` per `window`. Quotas compose: a request must fit every quota of
/// every rule that names its caller and one of its capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// The capabilities it counts.
    pub capabilities: Vec<Capability>,
    /// Requests per window (at least 1).
    pub requests: u32,
    /// The window (at least 1 s).
    pub window: Duration,
}

/// Which quota of the policy: its rule and its place in the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotaId {
    rule: usize,
    quota: usize,
}

/// The policy: a list of rules. An empty policy denies everything.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// A policy of these rules.
    pub fn new(rules: Vec<Rule>) -> Self {
        Self { rules }
    }

    /// How many rules it has.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// `--dev`: every capability on every tenant for `uid`, and nobody else.
    pub(crate) fn insecure_dev_owner_only(uid: u32) -> Self {
        Self::new(vec![Rule {
            name: "dev-owner".into(),
            uids: vec![uid],
            gids: vec![],
            subjects: vec![],
            capabilities: Capability::ALL.to_vec(),
            tenants: vec![TenantPattern::Any],
            quotas: vec![],
            brakes: vec![],
        }])
    }

    /// Every brake a request of `who` that uses `capabilities` on a token of `tenant` counts
    /// against.
    pub fn brakes(
        &self,
        who: &Identity,
        capabilities: &[Capability],
        tenant: &str,
    ) -> Vec<(BrakeId, &Brake)> {
        let mut out = Vec::new();
        for (r, rule) in self.rules.iter().enumerate() {
            if rule.brakes.is_empty() || !rule.names(who) {
                continue;
            }
            for (b, brake) in rule.brakes.iter().enumerate() {
                if brake.capabilities.iter().any(|c| capabilities.contains(c))
                    && brake.tenants.iter().any(|p| p.matches(tenant))
                {
                    out.push((BrakeId { rule: r, brake: b }, brake));
                }
            }
        }
        out
    }

    /// Every quota a request of `who` that uses `capabilities` must fit, each once.
    pub fn quotas(&self, who: &Identity, capabilities: &[Capability]) -> Vec<(QuotaId, &Quota)> {
        let mut out = Vec::new();
        for (r, rule) in self.rules.iter().enumerate() {
            if rule.quotas.is_empty() || !rule.names(who) {
                continue;
            }
            for (q, quota) in rule.quotas.iter().enumerate() {
                if quota.capabilities.iter().any(|c| capabilities.contains(c)) {
                    out.push((QuotaId { rule: r, quota: q }, quota));
                }
            }
        }
        out
    }

    /// Whether `who` may use `capability` (on `tenant`, for tenant-scoped capabilities).
    pub(crate) fn allows(
        &self,
        who: &Identity,
        capability: Capability,
        tenant: Option<&str>,
    ) -> bool {
        self.rules.iter().any(|rule| {
            let is_caller = rule.names(who);
            let granted = rule.capabilities.iter().any(|c| c.grants(capability));
            let in_scope = match (capability.tenant_scoped(), tenant) {
                (true, Some(t)) => rule.tenants.iter().any(|p| p.matches(t)),
                // A list across tenants: allowed if granted on any tenant; the caller then
                // filters the list to the tenants this identity may see.
                (true, None) => !rule.tenants.is_empty(),
                (false, _) => true,
            };
            is_caller && granted && in_scope
        })
    }
}

impl Rule {
    /// Whether this rule names `who`. Each kind of identity matches only its own kind of name:
    /// a certificate never matches a uid or gid, a local caller never a subject. Exhaustive by
    /// construction: a new kind of identity does not compile until it is decided here.
    fn names(&self, who: &Identity) -> bool {
        match who {
            Identity::Certificate(subject) => self.subjects.contains(subject),
            Identity::Local(peer) => self.uids.contains(&peer.uid) || self.gids.contains(&peer.gid),
        }
    }
}

impl Policy {
    /// Whether `who` holds `capability` on every tenant (a rule with the pattern `*`).
    pub(crate) fn allows_everywhere(&self, who: &Identity, capability: Capability) -> bool {
        self.rules.iter().any(|rule| {
            rule.names(who)
                && rule.capabilities.iter().any(|c| c.grants(capability))
                && (!capability.tenant_scoped() || rule.tenants.contains(&TenantPattern::Any))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(uid: u32, gid: u32) -> Identity {
        Identity::local(uid, gid, None)
    }

    fn cert(name: &str) -> Identity {
        Identity::Certificate(name.parse().expect("subject name"))
    }

    fn policy() -> Policy {
        Policy::new(vec![
            Rule {
                name: "bank-receiver".into(),
                uids: vec![1001],
                gids: vec![],
                subjects: vec![],
                capabilities: vec![Capability::TokenSeal],
                tenants: vec!["*".parse().expect("pattern")],
                quotas: vec![],
                brakes: vec![],
            },
            Rule {
                name: "platform".into(),
                uids: vec![],
                gids: vec![2000],
                subjects: vec![],
                capabilities: vec![Capability::TokenUnseal, Capability::TokenRead],
                tenants: vec![
                    "acme-*".parse().expect("pattern"),
                    "globex".parse().expect("pattern"),
                ],
                quotas: vec![],
                brakes: vec![],
            },
        ])
    }

    #[test]
    fn seal_only_identity_cannot_unseal() {
        let p = policy();
        assert!(p.allows(&who(1001, 1), Capability::TokenSeal, Some("acme")));
        assert!(!p.allows(&who(1001, 1), Capability::TokenUnseal, Some("acme")));
    }

    #[test]
    fn tenant_patterns_limit_grants() {
        let p = policy();
        assert!(p.allows(&who(5, 2000), Capability::TokenUnseal, Some("acme-gmbh")));
        assert!(p.allows(&who(5, 2000), Capability::TokenUnseal, Some("globex")));
        assert!(!p.allows(&who(5, 2000), Capability::TokenUnseal, Some("globex2")));
        assert!(!p.allows(&who(5, 2000), Capability::TokenUnseal, Some("initech")));
    }

    #[test]
    fn vault_wide_operations_need_every_tenant() {
        let p = policy();
        assert!(p.allows_everywhere(&who(1001, 1), Capability::TokenSeal));
        assert!(
            !p.allows_everywhere(&who(5, 2000), Capability::TokenUnseal),
            "acme-* is not every tenant"
        );
    }

    #[test]
    fn unknown_callers_get_nothing() {
        let p = policy();
        for c in Capability::ALL {
            assert!(!p.allows(&who(4242, 4242), *c, Some("acme")));
        }
        assert!(!Policy::insecure_dev_owner_only(0).allows(
            &who(65534, 65534),
            Capability::SysStatus,
            None
        ));
    }

    #[test]
    fn backup_is_its_own_capability() {
        let operator = Policy::new(vec![Rule {
            name: "operator".into(),
            uids: vec![0],
            gids: vec![],
            subjects: vec![],
            capabilities: vec![Capability::SysStatus, Capability::AuditRead],
            tenants: vec![TenantPattern::Any],
            quotas: vec![],
            brakes: vec![],
        }]);
        assert!(!operator.allows_everywhere(&who(0, 0), Capability::SysBackup));
        assert!(!policy().allows_everywhere(&who(1001, 1), Capability::SysBackup));
        assert!(
            Policy::insecure_dev_owner_only(7).allows_everywhere(&who(7, 7), Capability::SysBackup)
        );
        assert_eq!(
            "sys:backup".parse::<Capability>(),
            Ok(Capability::SysBackup)
        );
    }

    #[test]
    fn capability_names_round_trip() {
        for c in Capability::ALL {
            assert_eq!(c.name().parse::<Capability>(), Ok(*c));
        }
        assert!("token:everything".parse::<Capability>().is_err());
        assert!("../x*".parse::<TenantPattern>().is_err());
    }

    /// Rules that name both kinds: a local uid and a certificate subject.
    fn mixed() -> Policy {
        Policy::new(vec![
            Rule {
                name: "bank-receiver".into(),
                uids: vec![1001],
                gids: vec![],
                subjects: vec!["bank-receiver".parse().expect("name")],
                capabilities: vec![Capability::TokenSeal],
                tenants: vec![TenantPattern::Any],
                quotas: vec![],
                brakes: vec![],
            },
            Rule {
                name: "platform".into(),
                uids: vec![],
                gids: vec![2000],
                subjects: vec!["platform-app".parse().expect("name")],
                capabilities: vec![Capability::TokenUnseal, Capability::SysStatus],
                tenants: vec![TenantPattern::Any],
                quotas: vec![],
                brakes: vec![],
            },
        ])
    }

    #[test]
    fn certificate_identity_matches_subjects_only() {
        let p = mixed();
        assert!(p.allows(&cert("platform-app"), Capability::TokenUnseal, Some("acme")));
        assert!(p.allows(&cert("bank-receiver"), Capability::TokenSeal, Some("acme")));
        assert!(!p.allows(
            &cert("bank-receiver"),
            Capability::TokenUnseal,
            Some("acme")
        ));
        assert!(p.allows_everywhere(&cert("bank-receiver"), Capability::TokenSeal));
        // Exact names: no prefixes, no case folding, no uid spelled as a name.
        for other in ["platform", "platform-app2", "Platform-App", "1001", "2000"] {
            for c in Capability::ALL {
                assert!(!p.allows(&cert(other), *c, Some("acme")), "{other}");
            }
        }
    }

    #[test]
    fn local_identity_never_matches_subjects() {
        let p = mixed();
        assert!(p.allows(&who(1001, 1), Capability::TokenSeal, Some("acme")));
        assert!(p.allows(&who(5, 2000), Capability::TokenUnseal, Some("acme")));
        assert!(!p.allows(&who(1001, 1), Capability::TokenUnseal, Some("acme")));
        // A rule that names only a subject grants nothing to any local caller.
        let subject_only = Policy::new(vec![Rule {
            name: "cert-only".into(),
            uids: vec![],
            gids: vec![],
            subjects: vec!["platform-app".parse().expect("name")],
            capabilities: Capability::ALL.to_vec(),
            tenants: vec![TenantPattern::Any],
            quotas: vec![],
            brakes: vec![],
        }]);
        for (uid, gid) in [(0, 0), (1001, 1), (65534, 65534)] {
            for c in Capability::ALL {
                assert!(!subject_only.allows(&who(uid, gid), *c, Some("acme")));
                assert!(!subject_only.allows_everywhere(&who(uid, gid), *c));
            }
        }
        // And the dev owner's rule grants nothing to any certificate.
        let dev = Policy::insecure_dev_owner_only(0);
        assert!(!dev.allows(&cert("root"), Capability::SysStatus, None));
        assert!(!dev.allows(&cert("0"), Capability::SysStatus, None));
    }

    #[test]
    fn who_names_the_subject() {
        assert_eq!(cert("payments-app").to_string(), "cert=payments-app");
        assert_eq!(who(0, 0).to_string(), "uid=0 gid=0");
        assert_eq!(
            Identity::local(1, 2, Some(3)).to_string(),
            "uid=1 gid=2 pid=3"
        );
    }

    #[test]
    fn subject_names_are_checked() {
        for ok in ["payments-app", "a", "svc.example.com", "ops@bank", "A_1"] {
            assert!(ok.parse::<SubjectName>().is_ok(), "{ok}");
        }
        let long = "a".repeat(SubjectName::MAX_LEN + 1);
        for bad in ["", "*", "app*", "a b", "cert=x", "x\ny", "é", long.as_str()] {
            assert!(bad.parse::<SubjectName>().is_err(), "{bad:?}");
        }
    }
}
