//! External programs some tests drive (Chromium, Python, Node). In CI (`CI=true`, where
//! `.ci/run` installs them) a missing one fails the test; on a developer's machine the test
//! prints why it is skipped and passes.

use std::path::{Path, PathBuf};

/// True when running under CI (`.ci/run` is called with `CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The first of `candidates` found (an absolute path, or a name looked up on `PATH`).
pub fn find(candidates: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    candidates.iter().find_map(|c| {
        let c = Path::new(c);
        if c.is_absolute() {
            return c.is_file().then(|| c.to_path_buf());
        }
        std::env::split_paths(&path)
            .map(|dir| dir.join(c))
            .find(|p| p.is_file())
    })
}

/// What a test needs and did not find: fails in CI, else prints the skip and returns `None`.
pub fn missing<T>(test: &str, what: &str, install: &str) -> Option<T> {
    if in_ci() {
        panic!("{test}: {what} is missing; .ci/run installs it ({install})");
    }
    eprintln!("SKIPPED {test}: {what} is missing (install with: {install}; CI fails instead)");
    None
}

/// `tool` located by [`find`], or [`missing`].
pub fn require(test: &str, candidates: &[&str], install: &str) -> Option<PathBuf> {
    match find(candidates) {
        Some(p) => Some(p),
        None => missing(test, candidates[0], install),
    }
}

/// `target/test-artifacts/`, where tests leave what a person may want to look at afterwards.
pub fn artifacts_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR has a parent")
        .join("test-artifacts")
}
