//! Release builds of the Lambda binary link the code the webhook runs first
//! (`infra/hot-text.ld`, made by `scripts/hot_order.py`): its resident memory
//! then falls by about a fifth (BENCHMARKS.md §11). Only LLD reads the
//! script's `OVERWRITE_SECTIONS`, so it is passed where LLD is known to link:
//! cargo lambda's zig (the deployed arm64 build) and rustc's own LLD, the
//! default for x86_64 Linux. `ITSM_BRIDGE_HOT_TEXT=off` links without it.
//! Where rustc's LLD links, identical functions are also folded (`--icf`).

fn main() {
    const SCRIPT: &str = "infra/hot-text.ld";
    println!("cargo::rerun-if-changed={SCRIPT}");
    println!("cargo::rerun-if-env-changed=ITSM_BRIDGE_HOT_TEXT");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let zig = var("RUSTC_LINKER").contains("zig");
    let rust_lld = var("TARGET") == "x86_64-unknown-linux-gnu" && var("RUSTC_LINKER").is_empty();
    let script = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join(SCRIPT);
    if var("PROFILE") == "release"
        && (zig || rust_lld)
        && var("ITSM_BRIDGE_HOT_TEXT") != "off"
        && script.is_file()
    {
        println!(
            "cargo::rustc-link-arg-bin=itsm-bridge=-Wl,-T,{}",
            script.display()
        );
    }
    // Identical code folded once (-125 KB; Rust's functions are
    // `unnamed_addr`, so folding them is allowed). zig refuses the flag.
    if var("PROFILE") == "release" && rust_lld {
        println!("cargo::rustc-link-arg-bin=itsm-bridge=-Wl,--icf=all");
    }
}
