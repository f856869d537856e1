//! Claude Code runs `sluice-hook` once per event and waits for it, so its start is its cost.
//!
//! On Linux with glibc, Rust links its unwinder from `libgcc_s.so`. Loading that library
//! cost the hook 0.07 to 0.09 ms (measured paired), much of it in its constructor, which
//! asks the CPU for its features (a query that traps under a hypervisor). This links GCC's
//! static unwinder into the `sluice-hook` binary instead (what `gcc -static-libgcc` does),
//! so the loader never opens `libgcc_s`. Panics unwind exactly as before.
//!
//! Only for a native, dynamically linked glibc build whose linker has the static unwinder
//! (a `crt-static` build links it already); anywhere else this does nothing. With rust-lld,
//! Rust's default linker on x86_64 Linux, the binary then no longer needs `libgcc_s`; GNU ld
//! keeps the dependency, which costs nothing more than before.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let is = |key: &str, value: &str| env::var(key).is_ok_and(|v| v == value);
    let native = env::var("HOST").ok() == env::var("TARGET").ok();
    let crt_static = env::var("CARGO_CFG_TARGET_FEATURE")
        .is_ok_and(|features| features.split(',').any(|f| f == "crt-static"));
    let glibc = is("CARGO_CFG_TARGET_OS", "linux") && is("CARGO_CFG_TARGET_ENV", "gnu");
    if !native || crt_static || !glibc {
        return;
    }
    let Some(unwinder) = static_unwinder() else {
        return;
    };
    // Found again if the compiler moves it (an upgrade of GCC).
    println!("cargo:rerun-if-changed={}", unwinder.display());
    for arg in [
        "-Wl,--push-state,--whole-archive",
        &unwinder.display().to_string(),
        "-Wl,--pop-state",
    ] {
        println!("cargo:rustc-link-arg-bin=sluice-hook={arg}");
    }
}

/// `libgcc_eh.a`, where the C compiler that links the binary finds it (the linker cargo
/// was given, else `cc`, as rustc does).
fn static_unwinder() -> Option<PathBuf> {
    let linker = env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".to_string());
    let output = Command::new(linker)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    // Without the file, the compiler prints the bare name back.
    (output.status.success() && path.is_absolute() && path.is_file()).then_some(path)
}
