//! Claude Code runs `sluice-hook` once per event and waits for it, so its start is its cost.
//!
//! On Linux with glibc, Rust links its unwinder from `libgcc_s.so`. Loading that library
//! costs the hook about a tenth of a millisecond, mostly in its constructor, which asks the
//! CPU for its features (a query that traps under a hypervisor). This links GCC's static
//! unwinder into the `sluice-hook` binary instead (what `gcc -static-libgcc` does), so the
//! loader never opens `libgcc_s`. Panics unwind exactly as before.
//!
//! Only for a native build whose C compiler has the static unwinder; anywhere else this does
//! nothing. With rust-lld, Rust's default linker here, the binary then no longer needs
//! `libgcc_s`; GNU ld keeps the dependency, which costs nothing more than before.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let is = |key: &str, value: &str| env::var(key).is_ok_and(|v| v == value);
    let native = env::var("HOST").ok() == env::var("TARGET").ok();
    if !(native && is("CARGO_CFG_TARGET_OS", "linux") && is("CARGO_CFG_TARGET_ENV", "gnu")) {
        return;
    }
    let Some(unwinder) = static_unwinder() else {
        return;
    };
    println!(
        "cargo:rustc-link-arg-bin=sluice-hook=-Wl,--push-state,--whole-archive,{},--pop-state",
        unwinder.display()
    );
}

/// `libgcc_eh.a`, where the C compiler that links the binary finds it.
fn static_unwinder() -> Option<PathBuf> {
    let output = Command::new("cc")
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    // Without the file, the compiler prints the bare name back.
    (output.status.success() && path.is_absolute() && path.is_file()).then_some(path)
}
