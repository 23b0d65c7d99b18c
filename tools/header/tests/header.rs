//! The checked-in C header must equal what cbindgen generates from the adam8bit sources now.
//! `BNB_BLESS_HEADER=1 cargo test -p adam8bit-header` rewrites it. (Its version macros are
//! checked against adam8bit's Cargo.toml by adam8bit's own `tests/header_version.rs`.)

use std::path::{Path, PathBuf};

/// The adam8bit crate: two levels above this one.
fn crate_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn generate() -> String {
    let root = crate_root();
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn checked_in_header_is_current() {
    let path = crate_root().join("include/adam8bit.h");
    let fresh = generate();
    if std::env::var_os("BNB_BLESS_HEADER").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "include/adam8bit.h is stale: regenerate it with `BNB_BLESS_HEADER=1 cargo test -p adam8bit-header` and commit it"
    );
}
