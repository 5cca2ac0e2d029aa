//! Exit codes, the same for every command.

/// The run worked and every check passed.
pub const OK: u8 = 0;
/// The run worked, but a threshold, hypothesis or completeness check failed.
pub const CHECKS_FAILED: u8 = 1;
/// Usage or configuration error: a bad flag or a malformed file.
pub const USAGE: u8 = 2;
/// Something the command needs is unreachable: target, backend, Docker.
pub const UNREACHABLE: u8 = 3;
/// Interrupted by Ctrl-C or SIGTERM.
pub const INTERRUPTED: u8 = 130;
