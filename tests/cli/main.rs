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

#[test]
fn a_drill_dry_run_prints_the_plan_even_without_a_stack() {
    let out = Command::new(env!("CARGO_BIN_EXE_recordctl"))
        .args(["drill", "db-outage", "--dry-run"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env_remove("COMPOSE_PROJECT_NAME")
        .output()
        .expect("run recordctl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("fault 1: stop db on (container not resolved)"),
        "{stdout}"
    );
    assert!(stdout.contains("expect: DatabaseDown Firing within 90s"), "{stdout}");
    assert!(stdout.contains("nothing was changed"), "{stdout}");
    let out = Command::new(env!("CARGO_BIN_EXE_recordctl"))
        .args(["drill", "no-such-drill"])
        .output()
        .expect("run recordctl");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("built-in drills: db-outage"));
}
