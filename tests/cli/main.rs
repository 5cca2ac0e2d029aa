//! recordctl's command line: help, version, usage errors and their exit codes.

use std::process::Command;

fn recordctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_recordctl"))
        .args(args)
        .output()
        .expect("run recordctl")
}

#[test]
fn version_prints_the_package_version() {
    let out = recordctl(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("recordctl {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_lists_commands_exit_codes_and_examples() {
    let out = recordctl(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["store", "Exit codes", "Examples"] {
        assert!(text.contains(needle), "--help lacks {needle:?}:\n{text}");
    }
}

#[test]
fn usage_errors_exit_2_and_name_the_problem() {
    let out = recordctl(&["store", "--listen", "not-an-address"]);
    assert_eq!(out.status.code(), Some(i32::from(recordctl::exit::USAGE)));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
    let out = recordctl(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
}
