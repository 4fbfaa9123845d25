//! Reading secrets and personal data: from stdin or a file, never from the command line, into
//! zeroizing memory.

use std::fs::File;
use std::io::{self, BufRead, IsTerminal as _, Read};
use std::path::Path;

use anyhow::Context as _;
use vault_client::Secret;
use zeroize::Zeroizing;

use crate::cmd::Usage;

/// The daemon refuses bodies over 64 KiB, so no secret can be larger.
const MAX_SECRET: usize = 64 * 1024;

/// How to treat the bytes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Bytes as they are.
    Binary,
    /// UTF-8 text; one trailing newline (`\n` or `\r\n`) is dropped.
    Text,
}

/// Reads a secret from `file`, or from stdin when `file` is `None`.
pub(crate) fn read_secret(file: Option<&Path>, what: &str, mode: Mode) -> anyhow::Result<Secret> {
    let bytes = match file {
        Some(path) => {
            let mut f =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            read_bounded(&mut f).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => {
            let mut stdin = io::stdin().lock();
            if stdin.is_terminal() {
                eprintln!("vault-cli: reading the {what} from stdin; end it with Ctrl-D");
            }
            read_bounded(&mut stdin).context("cannot read stdin")?
        }
    };
    let secret = finish(bytes, mode)?;
    if secret.is_empty() {
        return Err(Usage::new(format!("the {what} is empty")).into());
    }
    Ok(secret)
}

/// Longest line of personal data read by [`read_lines`] (an account number, a subject).
const MAX_LINE: usize = 4096;

/// Reads one line from stdin for each name in `what` (e.g. `["account"]`), in that order, each
/// without its newline and in zeroizing memory: personal data to search for, kept off argv.
pub(crate) fn read_lines(what: &[&str]) -> anyhow::Result<Vec<Zeroizing<String>>> {
    let mut stdin = io::stdin().lock();
    if stdin.is_terminal() {
        eprintln!(
            "vault-cli: reading the {} from stdin, one per line",
            what.join(" and the ")
        );
    }
    lines_from(&mut stdin, what)
}

fn lines_from(reader: &mut impl BufRead, what: &[&str]) -> anyhow::Result<Vec<Zeroizing<String>>> {
    let mut out = Vec::with_capacity(what.len());
    for name in what {
        // Capacity fixed up front, so the buffer never reallocates and leaves no stale copy.
        let mut buf = Zeroizing::new(Vec::with_capacity(MAX_LINE + 2));
        reader
            .by_ref()
            .take(MAX_LINE as u64 + 2)
            .read_until(b'\n', &mut buf)
            .context("cannot read stdin")?;
        let line = buf
            .strip_suffix(b"\r\n")
            .or_else(|| buf.strip_suffix(b"\n"))
            .unwrap_or(&buf);
        if line.len() > MAX_LINE {
            return Err(Usage::new(format!("the {name} exceeds {MAX_LINE} bytes")).into());
        }
        let text = std::str::from_utf8(line)
            .map_err(|_| Usage::new(format!("the {name} is not UTF-8 text")))?;
        if text.is_empty() {
            return Err(Usage::new(format!("no {name} on stdin")).into());
        }
        out.push(Zeroizing::new(text.to_owned()));
    }
    Ok(out)
}

/// The personal data of a token's binding, read from a file (`token put --binding-file`).
#[derive(Debug)]
pub(crate) struct PersonalBinding {
    /// The user who gave consent.
    pub(crate) subject: Zeroizing<String>,
    /// The account the token reads or pays from.
    pub(crate) account: Zeroizing<String>,
}

/// Reads a binding file: `subject=…` and `account=…`, each on a line of its own, exactly once
/// (blank lines and `#` comments are skipped). Errors name the line, never its value.
pub(crate) fn read_binding_file(path: &Path) -> anyhow::Result<PersonalBinding> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let bytes =
        read_bounded(&mut file).with_context(|| format!("cannot read {}", path.display()))?;
    parse_binding(bytes.expose_secret())
        .map_err(|e| anyhow::Error::new(Usage::new(format!("{}: {e}", path.display()))))
}

fn parse_binding(bytes: &[u8]) -> Result<PersonalBinding, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())?;
    let (mut subject, mut account) = (None, None);
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (slot, value) = match line.split_once('=') {
            Some(("subject", v)) => (&mut subject, v),
            Some(("account", v)) => (&mut account, v),
            _ => {
                return Err(format!("line {}: expected subject=… or account=…", n + 1));
            }
        };
        if value.is_empty() || value.len() > MAX_LINE {
            return Err(format!(
                "line {}: the value must be 1-{MAX_LINE} bytes",
                n + 1
            ));
        }
        if slot.replace(Zeroizing::new(value.to_owned())).is_some() {
            return Err(format!("line {}: given twice", n + 1));
        }
    }
    match (subject, account) {
        (Some(subject), Some(account)) => Ok(PersonalBinding { subject, account }),
        (None, _) => Err("no subject=… line".into()),
        (_, None) => Err("no account=… line".into()),
    }
}

/// Reads all of `reader` (at most [`MAX_SECRET`] bytes) into zeroizing memory that never grows,
/// so no stale copy is left behind.
fn read_bounded(reader: &mut impl Read) -> anyhow::Result<Secret> {
    let mut buf = Zeroizing::new(vec![0; MAX_SECRET + 1]);
    let mut len = 0;
    loop {
        let n = match reader.read(&mut buf[len..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        len += n;
        if len > MAX_SECRET {
            return Err(Usage::new(format!("the secret exceeds {MAX_SECRET} bytes")).into());
        }
    }
    Ok(Secret::from_slice(&buf[..len]))
}

/// Strips one trailing newline in text mode and checks UTF-8.
fn finish(bytes: Secret, mode: Mode) -> anyhow::Result<Secret> {
    match mode {
        Mode::Binary => Ok(bytes),
        Mode::Text => {
            let raw = bytes.expose_secret();
            let trimmed = raw
                .strip_suffix(b"\r\n")
                .or_else(|| raw.strip_suffix(b"\n"))
                .unwrap_or(raw);
            if std::str::from_utf8(trimmed).is_err() {
                return Err(Usage::new("the input is not UTF-8 text; pass --binary").into());
            }
            Ok(Secret::from_slice(trimmed))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_binding_file_names_subject_and_account_once_and_errors_never_echo_a_value() {
        let ok = parse_binding(b"# consent of 2026-12-02\nsubject=user-42\r\naccount=DE89 3704\n")
            .unwrap();
        assert_eq!(ok.subject.as_str(), "user-42");
        assert_eq!(ok.account.as_str(), "DE89 3704");
        for (input, want) in [
            (&b"subject=u\n"[..], "no account"),
            (b"account=DE89\n", "no subject"),
            (
                b"subject=u\naccount=DE89\naccount=DE00\n",
                "line 3: given twice",
            ),
            (b"subject=u\niban=DE89\n", "line 2: expected"),
            (b"subject=\naccount=DE89\n", "line 1: the value"),
            (b"subject=u\naccount=\xff\n", "not UTF-8"),
        ] {
            let err = parse_binding(input).unwrap_err();
            assert!(err.contains(want), "{err}");
            assert!(
                !err.contains("DE89"),
                "an error echoes personal data: {err}"
            );
        }
    }

    fn text(input: &[u8]) -> anyhow::Result<Secret> {
        finish(read_bounded(&mut &input[..])?, Mode::Text)
    }

    #[test]
    fn text_mode_trims_exactly_one_newline() {
        assert_eq!(text(b"tok\n").unwrap().expose_secret(), b"tok");
        assert_eq!(text(b"tok\r\n").unwrap().expose_secret(), b"tok");
        assert_eq!(text(b"tok\n\n").unwrap().expose_secret(), b"tok\n");
        assert_eq!(text(b"tok").unwrap().expose_secret(), b"tok");
    }

    #[test]
    fn binary_mode_keeps_bytes() {
        let s = finish(read_bounded(&mut &b"\xff\x00\n"[..]).unwrap(), Mode::Binary).unwrap();
        assert_eq!(s.expose_secret(), b"\xff\x00\n");
    }

    #[test]
    fn text_mode_refuses_non_utf8() {
        let err = text(b"\xff").unwrap_err();
        assert!(err.is::<Usage>());
    }

    #[test]
    fn reads_one_line_per_value() {
        let mut input = &b"DE89370400440532013000\r\nuser-42\nrest"[..];
        let lines = lines_from(&mut input, &["account", "subject"]).unwrap();
        assert_eq!(lines[0].as_str(), "DE89370400440532013000");
        assert_eq!(lines[1].as_str(), "user-42");
        let err = lines_from(&mut &b"\n"[..], &["account"]).unwrap_err();
        assert!(err.is::<Usage>());
        let long = vec![b'1'; MAX_LINE + 1];
        assert!(
            lines_from(&mut &long[..], &["account"])
                .unwrap_err()
                .is::<Usage>()
        );
    }

    #[test]
    fn refuses_oversized_input() {
        let big = vec![b'a'; MAX_SECRET + 1];
        assert!(read_bounded(&mut &big[..]).unwrap_err().is::<Usage>());
        let max = vec![b'a'; MAX_SECRET];
        assert_eq!(read_bounded(&mut &max[..]).unwrap().len(), MAX_SECRET);
    }
}
