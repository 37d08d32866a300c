//! Puts the git revision into `--version`: `SIGV4_PROXY_VERSION` is `0.1.0 (git 0ec3c28)` in a
//! git checkout, plain `0.1.0` without one (a Docker build context without `.git`, a crates.io
//! tarball). `SIGV4_PROXY_GIT_REV` set at build time wins (`docker build --build-arg`).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SIGV4_PROXY_GIT_REV");
    let version = env!("CARGO_PKG_VERSION");
    let rev = std::env::var("SIGV4_PROXY_GIT_REV")
        .ok()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .or_else(|| {
            // Rebuild when HEAD moves: HEAD itself (a branch switch) and the branch's ref (a
            // commit). In a worktree both live outside `./.git`, so ask git where they are.
            let mut watch = vec![git(&["rev-parse", "--git-path", "HEAD"])];
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                watch.push(git(&["rev-parse", "--git-path", &branch]));
            }
            watch.push(git(&["rev-parse", "--git-path", "packed-refs"]));
            for path in watch.into_iter().flatten() {
                // A path that does not exist would make cargo rerun this script every build.
                if std::path::Path::new(&path).exists() {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
            git(&["rev-parse", "--short", "HEAD"])
        });
    match rev {
        Some(rev) => println!("cargo:rustc-env=SIGV4_PROXY_VERSION={version} (git {rev})"),
        None => println!("cargo:rustc-env=SIGV4_PROXY_VERSION={version}"),
    }
}
