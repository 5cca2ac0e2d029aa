//! Where results go: the human text on stdout, or — with `--json -` — the JSON document on
//! stdout and the text on stderr, so a pipe gets exactly one document.

use serde::Serialize;

/// Writes `text` and, when asked, `doc` as pretty JSON to `json` (`-` for stdout).
/// Returns the message to show when the JSON file cannot be written. The rule every command
/// follows: a report file (JSON, JUnit, HTML, HDR log) that cannot be written makes the exit
/// code 2, whatever the verdict, which is printed all the same.
pub fn emit(text: &str, doc: &impl Serialize, json: Option<&str>) -> Result<(), String> {
    let rendered = || serde_json::to_string_pretty(doc).expect("reports serialize");
    match json {
        Some("-") => {
            eprint!("{text}");
            println!("{}", rendered());
            Ok(())
        }
        Some(path) => {
            print!("{text}");
            std::fs::write(path, rendered()).map_err(|e| format!("cannot write the JSON report to {path}: {e}"))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// The table every command prints: condensed borders and, on a terminal, cells wrapped to
/// fit its width (piped output keeps each row on one line, for grep).
pub fn table() -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    table
}
