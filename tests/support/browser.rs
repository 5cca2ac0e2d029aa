//! HTML reports as a person sees them: headless Chromium (Debian's package) renders a page,
//! which must log no console message; the rendered DOM comes back and a screenshot is kept.

use std::path::Path;
use std::process::{Command, Output};

pub struct Rendered {
    /// The DOM after rendering.
    pub dom: String,
}

impl Rendered {
    /// `<polyline>`s with at least one point drawn.
    pub fn lines_drawn(&self) -> usize {
        self.dom
            .split("<polyline")
            .skip(1)
            .filter(|p| {
                p.split("points=\"")
                    .nth(1)
                    .is_some_and(|pts| pts.split('"').next().unwrap_or("").contains(','))
            })
            .count()
    }
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Renders `html` (a file) in headless Chromium: no console message, a screenshot of more
/// than a blank page kept in `$TMPDIR/recordctl-test-artifacts/` (it outlives the test's
/// temp dir). `None` (after a SKIPPED line) without Chromium; in CI
/// that fails instead.
pub fn render(html: &Path) -> Option<Rendered> {
    let Some(chromium) = chromium() else {
        assert!(!super::in_ci(), "chromium is required in CI (apt-get install chromium)");
        super::skipped("SKIPPED: HTML report in a browser: chromium not installed (apt-get install chromium)");
        return None;
    };
    let dir = html.parent().expect("the page is in a directory");
    let url = format!("file://{}", html.display());
    let browse = |extra: &[&str]| -> Output {
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", dir.join("chromium-profile").display()))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap()
    };
    let dom = browse(&["--dump-dom"]);
    let stderr = String::from_utf8_lossy(&dom.stderr).to_string();
    assert!(dom.status.success(), "{stderr}");
    assert!(!stderr.contains("CONSOLE"), "console messages: {stderr}");
    let artifacts = std::env::temp_dir().join("recordctl-test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let stem = html.file_stem().and_then(|s| s.to_str()).unwrap_or("page");
    let screenshot = artifacts.join(format!("{stem}-{:08x}.png", rand::random::<u32>()));
    let shot = browse(&[
        "--window-size=900,2400",
        &format!("--screenshot={}", screenshot.display()),
    ]);
    assert!(shot.status.success(), "{}", String::from_utf8_lossy(&shot.stderr));
    let size = std::fs::metadata(&screenshot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "a screenshot of the page, not a blank: {size} bytes");
    eprintln!("screenshot kept at {}", screenshot.display());
    Some(Rendered {
        dom: String::from_utf8_lossy(&dom.stdout).to_string(),
    })
}
