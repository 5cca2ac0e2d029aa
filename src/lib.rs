//! recordctl: a toolkit that drives traffic at recordstore (or any HTTP target), breaks it
//! on purpose, and proves from metrics, logs and traces what happened.

pub mod backends;
pub mod cli;
pub mod config;
pub mod correlate;
pub mod doctor;
pub mod drill;
pub mod embedded;
pub mod exit;
#[doc(hidden)]
pub mod fuzz_entries;
pub mod html;
pub mod http1;
pub mod journey;
pub mod junit;
pub mod load;
pub mod output;
pub mod probe;
pub mod smoke;
mod store_cmd;
pub mod tomlfile;
pub mod traffic;
pub mod units;

use tokio_util::sync::CancellationToken;

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: cli::Cli) -> u8 {
    // The drill's packet delayer (in its helper container) handles its own signals.
    if let cli::Command::NetworkDelayQueue { delay_ms, jitter_ms } = cli.command {
        return drill::netqueue::run(
            std::time::Duration::from_millis(delay_ms),
            std::time::Duration::from_millis(jitter_ms),
        );
    }
    install_logger();
    let interrupt = CancellationToken::new();
    let on_signal = interrupt.clone();
    // One handler for SIGINT and SIGTERM for the whole process. Goose would install its own
    // (replacing any other); ours is first, so goose's attempt fails and ours stops goose too.
    let _ = ctrlc::set_handler(move || {
        if on_signal.is_cancelled() {
            eprintln!("recordctl: interrupted again; finishing up");
        } else {
            eprintln!(
                "recordctl: interrupted; stopping (a run writes its partial report, a drill puts everything back)"
            );
        }
        on_signal.cancel();
        goose::trigger_killswitch("interrupted by recordctl");
    });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            return exit::conclude(
                "",
                Err(exit::CommandError::Unreachable(format!(
                    "cannot start the async runtime: {err}"
                ))),
            );
        }
    };
    let (name, result) = runtime.block_on(async {
        match cli.command {
            cli::Command::LoadTest(args) => ("load-test", load::run(*args, interrupt).await),
            cli::Command::Journey(args) => ("journey", journey::run(args, interrupt).await),
            cli::Command::Correlate(args) => ("correlate", correlate::run(args).await),
            cli::Command::Drill(args) => ("drill", drill::run(args, interrupt).await),
            cli::Command::Probe(args) => ("probe", probe::run(args, interrupt).await),
            cli::Command::Smoke(args) => ("smoke", smoke::run(args, interrupt).await),
            cli::Command::Doctor(args) => ("doctor", doctor::run(args).await),
            cli::Command::Store(args) => ("store", store_cmd::run(args, interrupt).await),
            cli::Command::Report(cli::ReportCommand::Merge { files, json }) => {
                ("report merge", load::merge::run(&files, json.as_deref()))
            }
            cli::Command::NetworkDelayQueue { .. } => unreachable!("run above, without the runtime"),
        }
    });
    exit::conclude(name, result)
}

/// Routes the `log` records of libraries (goose, sqlx) to stderr, warnings and errors only,
/// so nothing a library logs can mix into results on stdout.
fn install_logger() {
    struct Stderr;
    impl log::Log for Stderr {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            metadata.level() <= log::Level::Warn
        }
        fn log(&self, record: &log::Record<'_>) {
            if self.enabled(record.metadata()) {
                eprintln!(
                    "recordctl: {} {}: {}",
                    record.level().as_str().to_lowercase(),
                    record.target(),
                    record.args()
                );
            }
        }
        fn flush(&self) {}
    }
    static LOGGER: Stderr = Stderr;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}
