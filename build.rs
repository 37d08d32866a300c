//! Puts the git revision into `--version`: `SIGV4_PROXY_VERSION` is `0.1.0 (git 0ec3c28)` in a
//! git checkout, plain `0.1.0` without one (a Docker build context without `.git`, a crates.io
//! tarball). `SIGV4_PROXY_GIT_REV` set at build time wins (`docker build --build-arg`).
//!
//! Release builds of the binary lay out the functions that start-up and requests run side by
//! side, in the order of `build/symbol-order.txt` (written by `bench/symbol_order.py`): the
//! kernel maps code in 64 KiB runs around each page touched, so hot code scattered over 8 MB of
//! text keeps most of it resident (measured: idle RSS after start 9.0 -> 5.8 MiB, after
//! requests 11.3 -> 6.9 MiB). Only where the linker is known to be LLD, which takes
//! `--symbol-ordering-file` (GNU ld does not): rustc >= 1.90 on x86_64-unknown-linux-gnu, where
//! rustc links with its own LLD, and no linker chosen in RUSTFLAGS or the cargo configuration.
//! Names the build does not have are skipped, so a list from another toolchain only helps less.
//! `SIGV4_PROXY_SYMBOL_ORDER=0` turns it off.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// Whether the linker rustc will use is its own LLD (see the module comment).
fn linker_is_rust_lld() -> bool {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("TARGET") != "x86_64-unknown-linux-gnu" || !var("RUSTC_LINKER").is_empty() {
        return false;
    }
    // -C linker=…, -C linker-flavor=…, -C linker-features=-lld, -C link-self-contained=…,
    // -C link-arg=-fuse-ld=…: someone chose the linker.
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    if flags
        .split('\x1f')
        .any(|f| f.contains("linker") || f.contains("link-self-contained") || f.contains("fuse-ld"))
    {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let Some(version) = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
    else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let mut numbers = version
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}

fn symbol_order() {
    println!("cargo:rerun-if-changed=build/symbol-order.txt");
    println!("cargo:rerun-if-env-changed=SIGV4_PROXY_SYMBOL_ORDER");
    let off = std::env::var("SIGV4_PROXY_SYMBOL_ORDER").is_ok_and(|v| v == "0");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let file = std::path::Path::new(&dir).join("build/symbol-order.txt");
    // `-Wl,` splits at commas: a path with one cannot be passed this way.
    let passable = file.exists() && !file.to_string_lossy().contains(',');
    if off || std::env::var("PROFILE").as_deref() != Ok("release") || !passable {
        return;
    }
    if linker_is_rust_lld() {
        let file = file.display();
        println!("cargo:rustc-link-arg-bin=sigv4-proxy=-Wl,--symbol-ordering-file={file}");
        // Names the build does not have (a stale list) are skipped, not reported one by one.
        println!("cargo:rustc-link-arg-bin=sigv4-proxy=-Wl,--no-warn-symbol-ordering");
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    symbol_order();
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
