//! The checked-in C header must equal what cbindgen generates from the sources now, and its
//! version macros must match Cargo.toml. `BNB_BLESS_HEADER=1 cargo test --test header`
//! rewrites it.

use std::path::Path;

fn generate() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
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
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/adam8bit.h");
    let fresh = generate();
    if std::env::var_os("BNB_BLESS_HEADER").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "include/adam8bit.h is stale: regenerate it with `BNB_BLESS_HEADER=1 cargo test --test header` and commit it"
    );
}

#[test]
fn version_macros_match_cargo_toml() {
    let header =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("include/adam8bit.h"))
            .unwrap();
    for (name, value) in [
        (
            "BNB_ADAM8BIT_VERSION_MAJOR",
            env!("CARGO_PKG_VERSION_MAJOR"),
        ),
        (
            "BNB_ADAM8BIT_VERSION_MINOR",
            env!("CARGO_PKG_VERSION_MINOR"),
        ),
        (
            "BNB_ADAM8BIT_VERSION_PATCH",
            env!("CARGO_PKG_VERSION_PATCH"),
        ),
    ] {
        let line = format!("#define {name} {value}");
        assert!(header.contains(&line), "header lacks `{line}`");
    }
    let runtime =
        unsafe { std::ffi::CStr::from_ptr(adam8bit::ffi::handle::bnb_adam8bit_version()) };
    assert_eq!(runtime.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}
