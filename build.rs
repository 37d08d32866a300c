//! Build script: the git revision for `--version` (`0.1.0 (abc1234)`).
//!
//! Order: `SIGV4_PROXY_GIT_REV` from the environment (container builds pass it as a build
//! argument, since `.git` is not in their context), then `git rev-parse --short HEAD`, then
//! `unknown` (a source tarball, or no git installed).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SIGV4_PROXY_GIT_REV");
    let rev = std::env::var("SIGV4_PROXY_GIT_REV")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SIGV4_PROXY_GIT_REV={}", rev.trim());
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

fn git_revision() -> Option<String> {
    let rev = git(&["rev-parse", "--short", "HEAD"])?;
    // Rebuild when HEAD moves: HEAD itself (checkout), the branch it points at (commit), and
    // packed-refs. In a worktree HEAD lives in the worktree's git dir, refs in the common one.
    // Only files that exist: cargo reruns the script on every build for a missing one.
    let mut watch = Vec::new();
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        watch.push(PathBuf::from(dir).join("HEAD"));
    }
    if let Some(common) = git(&["rev-parse", "--git-common-dir"]) {
        let common = PathBuf::from(common);
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(common.join(head_ref));
        }
        watch.push(common.join("packed-refs"));
    }
    for path in watch.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    Some(rev)
}
