//! recordctl's command line: help, version, usage errors and their exit codes.

use crate::support;
use std::process::Command;

fn recordctl(args: &[&str]) -> std::process::Output {
    support::recordctl().args(args).output().expect("run recordctl")
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
    // A typo in --skip is refused before anything is checked, naming the checks there are.
    let out = recordctl(&["doctor", "--skip", "grafan"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--skip \"grafan\": not a check") && stderr.contains("grafana"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing was checked");
}

#[test]
fn a_drill_dry_run_prints_the_plan_even_without_a_stack() {
    let out = support::recordctl()
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
    let out = support::recordctl()
        .args(["drill", "no-such-drill"])
        .output()
        .expect("run recordctl");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("built-in drills: db-outage"));
}

/// Every command that needs the target says the same thing when it does not answer: the
/// URL, the cause, and how to start a store; and exits 3.
#[test]
fn an_unreachable_target_gets_one_message_with_its_cause_everywhere() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("http://127.0.0.1:{port}");
    for args in [
        vec!["journey", "--target", &target],
        vec!["smoke", "--target", &target],
        vec!["load-test", "--target", &target, "--duration", "1s"],
    ] {
        let out = recordctl(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("cannot reach the target at {target}")),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.to_lowercase().contains("connection refused"),
            "{args:?} drops the cause: {stderr}"
        );
        assert!(stderr.contains("recordctl store"), "{args:?}: {stderr}");
    }
}

#[test]
fn the_top_level_help_shows_an_example_of_every_command() {
    let text = String::from_utf8_lossy(&recordctl(&["--help"]).stdout).to_string();
    for command in ["journey", "load-test", "drill", "smoke", "doctor", "store"] {
        assert!(
            text.contains(&format!("recordctl {command}")),
            "no example of {command}:\n{text}"
        );
    }
    let load = String::from_utf8_lossy(&recordctl(&["load-test", "--help"]).stdout).to_string();
    assert!(load.contains("browse, purchase, checkout, smoke"), "{load}");
}

/// On a terminal, tables wrap to its width (a terminal of 80 columns made by `script`); piped,
/// each row stays on one line for grep.
#[test]
fn tables_fit_the_terminal_they_are_printed_on() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: script (bsdutils) not installed");
        return;
    }
    let binary = env!("CARGO_BIN_EXE_recordctl");
    let command = format!("stty cols 80 rows 50; {binary} doctor --target http://127.0.0.1:1 --skip docker");
    let out = Command::new("script")
        .args(["-q", "-c", &command, "/dev/null"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let widest = text.lines().map(|l| l.trim_end().chars().count()).max().unwrap_or(0);
    assert!(
        widest <= 80,
        "a line of {widest} columns on an 80-column terminal:\n{text}"
    );
    assert!(text.contains("component"), "{text}");
    let piped = recordctl(&["doctor", "--target", "http://127.0.0.1:1", "--skip", "docker"]);
    let piped = String::from_utf8_lossy(&piped.stdout);
    assert!(
        piped.lines().any(|l| l.chars().count() > 80),
        "piped rows are not wrapped:\n{piped}"
    );
}

/// One rule for every command: a report file that cannot be written is exit 2 and names the
/// path, whatever the verdict.
#[test]
fn a_report_that_cannot_be_written_is_exit_2_in_every_command() {
    let bad = "/nonexistent-dir/report.json";
    for args in [
        vec!["probe", "tcp://127.0.0.1:1", "--json", bad],
        vec![
            "doctor",
            "--target",
            "http://127.0.0.1:1",
            "--skip",
            "docker",
            "--json",
            bad,
        ],
        vec!["load-test", "--duration", "1s", "--rate", "5/s", "--json", bad],
    ] {
        let out = recordctl(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(bad), "{args:?} does not name the path: {stderr}");
    }
}
