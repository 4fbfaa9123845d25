//! `VAULTD_*` environment variables: one rule that names every key of the configuration file.
//!
//! `VAULTD_` + the key's path upper-cased, with `__` (two underscores) between a section and its
//! key: `data_dir` is `VAULTD_DATA_DIR`, `[kms] key_id` is `VAULTD_KMS__KEY_ID`,
//! `[retention] max_age_days` is `VAULTD_RETENTION__MAX_AGE_DAYS`. Keys themselves contain
//! single underscores, so a single one could not tell `[kms] key_id` from a top-level
//! `kms_key_id`; two can. A name without `__` is a top-level key, or a whole section or array
//! (`VAULTD_POLICY`).
//!
//! The value is read as the TOML value the key would have in the file (`256`, `true`,
//! `["token:read"]`, `{ accounts = 90 }`, `"main"`); a value that is not TOML is a string, so
//! paths and names need no quotes (`VAULTD_SOCKET=/run/vaultd/vaultd.sock`). Quote a string
//! that would read as a number or boolean (`VAULTD_POSTGRES__NODE_ID='"7"'`). A value that
//! starts like an array, table or quoted string must be valid TOML.
//!
//! A variable overrides the file; a flag overrides the variable. Any other `VAULTD_*` variable
//! is an error at start, so that a misspelt setting (`VAULTD_SEAL_ON_ALARMS`) cannot leave a
//! protection silently off. Not config keys, and allowed: `VAULTD_CONFIG`, `VAULTD_LOG`,
//! `VAULTD_POSTGRES_URL`, and the test and bench harnesses' `VAULTD_TEST_*` and
//! `VAULTD_BENCH_*`. `VAULT_SOCKET` (`vault-cli`'s) stands in for `VAULTD_SOCKET` when that is
//! unset.

use std::ffi::OsString;

use anyhow::bail;

/// The prefix of every variable this module reads.
const PREFIX: &str = "VAULTD_";

/// Between a section and its key in a variable's name.
const SEPARATOR: &str = "__";

/// `VAULTD_*` variables that are not keys of the file: the file itself, the log filter, and the
/// PostgreSQL connection string, a secret that is read where it is used and never quoted.
pub(crate) const NOT_KEYS: &[&str] = &["VAULTD_CONFIG", "VAULTD_LOG", super::POSTGRES_URL_VAR];

/// Prefixes of the variables of the test and bench harnesses, which may be set in the
/// environment the daemon starts from: ignored.
pub(crate) const HARNESS_PREFIXES: &[&str] = &["VAULTD_TEST_", "VAULTD_BENCH_"];

/// The socket variable `vault-cli` reads: the daemon takes it for `socket` when `VAULTD_SOCKET`
/// is not set, so that one export serves both.
const CLI_SOCKET: &str = "VAULT_SOCKET";

/// Config keys set by the environment, in the order they apply (a whole section before its
/// keys, then by name).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Env {
    settings: Vec<Setting>,
}

/// One variable: its name, the key path it sets, the value.
#[derive(Debug, Clone, PartialEq)]
struct Setting {
    var: String,
    path: Vec<String>,
    value: toml::Value,
}

impl Env {
    /// The settings in the process's environment.
    pub fn from_process() -> anyhow::Result<Self> {
        Self::parse(std::env::vars_os())
    }

    /// The settings in `vars`; an error for a `VAULTD_*` variable that breaks the rule (its
    /// name, never its value).
    pub fn parse(vars: impl IntoIterator<Item = (OsString, OsString)>) -> anyhow::Result<Self> {
        let mut settings = Vec::new();
        let mut cli_socket = None;
        for (name, value) in vars {
            let Some(name) = name.to_str() else {
                continue; // not ours: every name of ours is ASCII
            };
            if name == CLI_SOCKET {
                cli_socket = Some(value);
                continue;
            }
            if !name.starts_with(PREFIX)
                || NOT_KEYS.contains(&name)
                || HARNESS_PREFIXES.iter().any(|p| name.starts_with(p))
            {
                continue;
            }
            let path = key_path(name)?;
            let Some(text) = value.to_str() else {
                bail!("{name} is not UTF-8");
            };
            settings.push(Setting {
                var: name.to_owned(),
                path,
                value: toml_value(name, text)?,
            });
        }
        let has_socket = settings.iter().any(|s| s.path == ["socket"]);
        if let Some(socket) = cli_socket.filter(|_| !has_socket) {
            let Some(text) = socket.to_str() else {
                bail!("{CLI_SOCKET} is not UTF-8");
            };
            settings.push(Setting {
                var: CLI_SOCKET.to_owned(),
                path: vec!["socket".to_owned()],
                value: toml::Value::String(text.to_owned()),
            });
        }
        settings.sort_by(|a, b| (a.path.len(), &a.var).cmp(&(b.path.len(), &b.var)));
        Ok(Self { settings })
    }

    /// Whether no variable sets anything.
    pub fn is_empty(&self) -> bool {
        self.settings.is_empty()
    }

    /// The variables that set something, in the order they apply.
    pub fn vars(&self) -> Vec<&str> {
        self.settings.iter().map(|s| s.var.as_str()).collect()
    }

    /// Sets every key in `table`, the file as parsed. A key under a value that is not a table
    /// (`VAULTD_SOCKET__X`) is an error naming the variable.
    pub(crate) fn apply(&self, table: &mut toml::Table) -> anyhow::Result<()> {
        for s in &self.settings {
            let (key, sections) = s.path.split_last().expect("key_path returns a key");
            let mut at = &mut *table;
            for section in sections {
                let entry = at
                    .entry(section.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                let Some(inner) = entry.as_table_mut() else {
                    bail!("{}: {section} is not a section", s.var);
                };
                at = inner;
            }
            at.insert(key.clone(), s.value.clone());
        }
        Ok(())
    }

    /// An error naming the first variable that sets a key outside the top-level `keys`.
    pub(crate) fn only(&self, keys: &[&str], why: &str) -> anyhow::Result<()> {
        match self
            .settings
            .iter()
            .find(|s| !matches!(s.path.as_slice(), [key] if keys.contains(&key.as_str())))
        {
            None => Ok(()),
            Some(s) => bail!(
                "{}: {why}; only {} apply",
                s.var,
                keys.iter()
                    .map(|k| format!("VAULTD_{}", k.to_ascii_uppercase()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The string a top-level key is set to, for `--dev`, which reads no file.
    pub(crate) fn top_level_string(&self, key: &str) -> anyhow::Result<Option<String>> {
        let Some(s) = self.settings.iter().find(|s| s.path == [key]) else {
            return Ok(None);
        };
        match &s.value {
            toml::Value::String(text) => Ok(Some(text.clone())),
            _ => bail!("{}: {key} is a string", s.var),
        }
    }
}

/// `VAULTD_KMS__KEY_ID` → `["kms", "key_id"]`.
fn key_path(name: &str) -> anyhow::Result<Vec<String>> {
    let rest = &name[PREFIX.len()..];
    let path: Vec<String> = rest.split(SEPARATOR).map(str::to_ascii_lowercase).collect();
    let well_formed = path.iter().all(|part| {
        !part.is_empty()
            && !part.starts_with('_')
            && !part.ends_with('_')
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    });
    if !well_formed || rest.bytes().any(|b| b.is_ascii_lowercase()) {
        bail!(
            "{name} is not a setting: VAULTD_ variables are VAULTD_KEY or VAULTD_SECTION__KEY, \
             upper case (docs/operator-guide.md, \"Environment\")"
        );
    }
    Ok(path)
}

/// The value as TOML, else as a string; text that starts like an array, a table or a quoted
/// string must be TOML.
fn toml_value(name: &str, text: &str) -> anyhow::Result<toml::Value> {
    match text.parse::<toml::Value>() {
        Ok(value) => Ok(value),
        Err(e) if text.trim_start().starts_with(['[', '{', '"', '\'']) => {
            bail!("{name} is not a TOML value: {}", e.message())
        }
        Err(_) => Ok(toml::Value::String(text.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> anyhow::Result<Env> {
        Env::parse(vars.iter().map(|(k, v)| (k.into(), v.into())))
    }

    fn applied(vars: &[(&str, &str)], file: &str) -> anyhow::Result<toml::Table> {
        let mut table: toml::Table = toml::from_str(file).expect("toml");
        env(vars)?.apply(&mut table)?;
        Ok(table)
    }

    #[test]
    fn names_are_key_paths_with_two_underscores_between_section_and_key() {
        assert_eq!(key_path("VAULTD_DATA_DIR").expect("ok"), ["data_dir"]);
        assert_eq!(
            key_path("VAULTD_KMS__KEY_ID").expect("ok"),
            ["kms", "key_id"]
        );
        assert_eq!(
            key_path("VAULTD_RETENTION__MAX_AGE_DAYS__ACCOUNTS").expect("ok"),
            ["retention", "max_age_days", "accounts"]
        );
        for bad in [
            "VAULTD_",
            "VAULTD_KMS___KEY_ID",
            "VAULTD__KMS",
            "VAULTD_KMS__",
            "VAULTD_kms__key_id",
            "VAULTD_KMS-KEY",
        ] {
            let err = key_path(bad).expect_err(bad).to_string();
            assert!(err.contains("VAULTD_SECTION__KEY"), "{bad}: {err}");
        }
    }

    #[test]
    fn values_are_toml_else_strings() {
        let t = applied(
            &[
                ("VAULTD_MAX_CONNECTIONS", "512"),
                ("VAULTD_SEAL_ON_ALARM", "true"),
                ("VAULTD_SOCKET", "/run/v.sock"),
                ("VAULTD_KMS__KEY_ID", "other"),
                ("VAULTD_POSTGRES__NODE_ID", "\"7\""),
                ("VAULTD_RETENTION__MAX_AGE_DAYS", "{ accounts = 90 }"),
            ],
            "socket = \"/s\"\n[kms]\nprovider = \"local\"\nkey_id = \"main\"\n",
        )
        .expect("applies");
        assert_eq!(t["max_connections"].as_integer(), Some(512));
        assert_eq!(t["seal_on_alarm"].as_bool(), Some(true));
        assert_eq!(t["socket"].as_str(), Some("/run/v.sock"));
        assert_eq!(t["kms"]["key_id"].as_str(), Some("other"));
        assert_eq!(
            t["kms"]["provider"].as_str(),
            Some("local"),
            "the rest stays"
        );
        assert_eq!(t["postgres"]["node_id"].as_str(), Some("7"));
        assert_eq!(
            t["retention"]["max_age_days"]["accounts"].as_integer(),
            Some(90)
        );
        let err = env(&[("VAULTD_POLICY", "[{ name = ")])
            .expect_err("broken")
            .to_string();
        assert!(err.contains("VAULTD_POLICY is not a TOML value"), "{err}");
    }

    #[test]
    fn a_whole_section_applies_before_its_keys() {
        let t = applied(
            &[
                ("VAULTD_KMS__KEY_ID", "override"),
                (
                    "VAULTD_KMS",
                    "{ provider = \"local\", key_id = \"a\", key_dir = \"/k\" }",
                ),
            ],
            "",
        )
        .expect("applies");
        assert_eq!(t["kms"]["key_id"].as_str(), Some("override"));
        let err = applied(&[("VAULTD_SOCKET__X", "1")], "socket = \"/s\"")
            .expect_err("not a section")
            .to_string();
        assert!(err.contains("VAULTD_SOCKET__X"), "{err}");
    }

    #[test]
    fn other_variables_are_left_alone_and_vault_socket_is_the_fallback() {
        let e = env(&[
            ("PATH", "/bin"),
            ("VAULTD_CONFIG", "/etc/vaultd.toml"),
            ("VAULTD_LOG", "debug"),
            ("VAULTD_POSTGRES_URL", "host=/run password=hunter2"),
            ("VAULTD_TEST_PG", "host=/tmp"),
            ("VAULTD_BENCH_RECORDS", "10"),
            ("VAULT_SOCKET", "/run/cli.sock"),
        ])
        .expect("parses");
        assert_eq!(e.vars(), ["VAULT_SOCKET"]);
        assert_eq!(
            e.top_level_string("socket").expect("a string").as_deref(),
            Some("/run/cli.sock")
        );
        let e = env(&[
            ("VAULT_SOCKET", "/run/cli.sock"),
            ("VAULTD_SOCKET", "/run/d.sock"),
        ])
        .expect("parses");
        assert_eq!(e.vars(), ["VAULTD_SOCKET"]);
    }

    #[test]
    fn errors_name_the_variable_never_its_value() {
        let err = env(&[("VAULTD_postgres_url", "password=hunter2")])
            .expect_err("lower case")
            .to_string();
        assert!(
            err.contains("VAULTD_postgres_url") && !err.contains("hunter2"),
            "{err}"
        );
    }
}
