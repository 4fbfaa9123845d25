//! Process hardening. The only module with `unsafe` code: each block calls one libc function
//! whose contract is stated in its `SAFETY` comment.

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no arguments, touches no memory of ours and cannot fail.
    unsafe { libc::geteuid() }
}
