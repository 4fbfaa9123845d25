//! Process hardening (SPEC §8) and the owner-only check of key files. The only module with
//! `unsafe` code: each block calls one libc function, and its `SAFETY` comment states why the
//! call is sound.

use std::fs;
use std::io::{self, Read as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use zeroize::Zeroizing;

/// The effective user id of this process.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no arguments, touches no memory of ours and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses a key file or key directory that is not ours alone: not a regular file (or
/// directory), group or other bits set, or another owner. `meta` is of `path` itself, not of a
/// symlink's target (`fs::symlink_metadata`, or an opened file's metadata). The message names
/// the path and what to fix.
pub fn check_private(path: &Path, meta: &fs::Metadata, dir: bool) -> Result<(), String> {
    let kind_ok = if dir { meta.is_dir() } else { meta.is_file() };
    if !kind_ok {
        let want = if dir { "a directory" } else { "a regular file" };
        return Err(format!("{} must be {want} (not a symlink)", path.display()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} has mode {mode:03o}; refusing: it must be accessible by its owner only (chmod {})",
            path.display(),
            if dir { "700" } else { "600" }
        ));
    }
    let euid = effective_uid();
    if meta.uid() != euid {
        return Err(format!(
            "{} is owned by uid {}, not by this process (uid {euid})",
            path.display(),
            meta.uid()
        ));
    }
    Ok(())
}

/// Reads a private key file of at most `max` bytes into zeroizing memory. It is opened without
/// following a symlink and [`check_private`] is applied to the opened file, so the file checked
/// is the file read.
pub(crate) fn read_private_file(path: &Path, max: u64) -> Result<Zeroizing<Vec<u8>>, String> {
    let file = fs::OpenOptions::new()
        .read(true)
        // Not through a symlink; O_NONBLOCK so that a FIFO in its place cannot hang the start.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => {
                format!("{} must be a regular file (not a symlink)", path.display())
            }
            _ => format!("{}: {e}", path.display()),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    check_private(path, &meta, false)?;
    if meta.len() > max {
        return Err(format!("{} is over {max} bytes", path.display()));
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0)));
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > max {
        return Err(format!("{} is over {max} bytes", path.display()));
    }
    Ok(bytes)
}

/// What [`harden`] achieved; the caller logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardening {
    /// Core dumps are off (RLIMIT_CORE 0 and not dumpable).
    pub no_core_dumps: bool,
    /// All current and future memory is locked (no key page can reach swap).
    pub memory_locked: bool,
    /// Why memory is not locked, when it is not.
    pub memory_lock_problem: Option<String>,
}

/// Restrictive umask (077), no core dumps (RLIMIT_CORE 0 and PR_SET_DUMPABLE 0: with a piped
/// core handler the kernel ignores RLIMIT_CORE), all memory locked where the memlock limit
/// allows (root, CAP_IPC_LOCK, or an unlimited RLIMIT_MEMLOCK), and a fixed mmap threshold. Call after any privilege change:
/// changing uid resets the dumpable flag.
pub fn harden() -> io::Result<Hardening> {
    // SAFETY: umask only sets the process file-mode mask and cannot fail.
    unsafe { libc::umask(0o077) };
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `zero` is a valid, initialized rlimit that outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: PR_SET_DUMPABLE takes one integer argument; the rest are ignored.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (memory_locked, memory_lock_problem) = lock_memory();
    fix_mmap_threshold();
    Ok(Hardening {
        no_core_dumps: true,
        memory_locked,
        memory_lock_problem,
    })
}

/// Allocations from this size up get their own mapping, given back whole when freed.
#[cfg(target_env = "gnu")]
const MMAP_THRESHOLD: libc::c_int = 256 << 10;

/// Fixes glibc's mmap threshold. By default it rises to the size of any mapped block that is
/// freed, so after the first of sled's 512 KiB I/O buffers is freed, the next ones come from a
/// malloc arena; under `mlockall` an arena's pages are never given back, and fragmented by the
/// small allocations between the buffers it only grows (measured: ≈ 20 bytes of RSS per request
/// for as long as the daemon runs). With a fixed threshold each buffer is its own mapping and
/// `munmap` returns it (docs/performance.md, "Memory").
fn fix_mmap_threshold() {
    // SAFETY: mallopt takes two integers and only changes glibc's allocation policy (under its
    // own lock); it is called at start, before the store opens. A 0 (refused) leaves the
    // default.
    #[cfg(target_env = "gnu")]
    let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
}

/// Locks all memory if the limit allows it. Locking future mappings under a small memlock limit
/// makes later thread spawns fail (EAGAIN), so we lock only when the limit cannot bite.
fn lock_memory() -> (bool, Option<String>) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit that outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return (
            false,
            Some(format!(
                "getrlimit(RLIMIT_MEMLOCK): {}",
                io::Error::last_os_error()
            )),
        );
    }
    if limit.rlim_cur != libc::RLIM_INFINITY && effective_uid() != 0 {
        return (
            false,
            Some(format!(
                "RLIMIT_MEMLOCK is {} bytes; key memory is not locked and could be swapped out \
                 (run with LimitMEMLOCK=infinity or CAP_IPC_LOCK)",
                limit.rlim_cur
            )),
        );
    }
    // MCL_ONFAULT (Linux 4.4): pages are locked as they are first touched instead of every
    // mapping being populated whole when it is made. Every page that ever held a key is locked
    // all the same; reserved but untouched memory (2 MiB thread stacks, malloc arenas) stays out
    // of RSS.
    // SAFETY: mlockall takes flags only; it changes paging of our own mappings.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) } != 0 {
        return (
            false,
            Some(format!("mlockall: {}", io::Error::last_os_error())),
        );
    }
    (true, None)
}

/// The listening Unix socket systemd passed (socket activation: `LISTEN_PID` is this process
/// and `LISTEN_FDS` is 1), or `None` when started without one. More than one is refused.
pub fn activated_listener() -> Result<Option<std::os::unix::net::UnixListener>, String> {
    use std::os::fd::{FromRawFd as _, OwnedFd};
    let mut fds = sd_notify::listen_fds().map_err(|e| format!("socket activation: {e}"))?;
    let Some(fd) = fds.next() else {
        return Ok(None);
    };
    if fds.len() > 0 {
        return Err(format!(
            "socket activation passed {} sockets; vaultd.socket must pass exactly one",
            fds.len() + 1
        ));
    }
    // SAFETY: by the sd_listen_fds protocol, checked by `listen_fds` (LISTEN_PID names this
    // process), descriptor 3 is an open socket that systemd passed to this process alone; it
    // is taken here once, at start, and owned from then on by the listener.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let listener = std::os::unix::net::UnixListener::from(owned);
    // Not a Unix socket (a TCP one, a file): getsockname says so.
    listener
        .local_addr()
        .map_err(|e| format!("socket activation: descriptor {fd} is not a Unix socket: {e}"))?;
    Ok(Some(listener))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_file_must_be_ours_alone_and_no_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("k.pem");
        fs::write(&key, b"key").expect("write");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(&read_private_file(&key, 16).expect("read")[..], b"key");
        assert!(
            read_private_file(&key, 2)
                .expect_err("too big")
                .contains("over 2 bytes")
        );
        let link = dir.path().join("link.pem");
        std::os::unix::fs::symlink(&key, &link).expect("symlink");
        assert!(
            read_private_file(&link, 16)
                .expect_err("symlink")
                .contains("not a symlink")
        );
        for mode in [0o640, 0o604, 0o620] {
            fs::set_permissions(&key, fs::Permissions::from_mode(mode)).expect("chmod");
            let err = read_private_file(&key, 16).expect_err("open to others");
            assert!(err.contains(&format!("mode {mode:03o}")), "{err}");
        }
    }
}
