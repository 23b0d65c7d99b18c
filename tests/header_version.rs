//! The checked-in C header's version macros match Cargo.toml and the runtime version string;
//! README names the soname of the current ABI.
//! (That the header is current is checked by `cargo test -p adam8bit-header`.)

use std::path::Path;

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

/// README names the soname, which carries the ABI version; an ABI bump must update it.
#[test]
fn readme_names_the_current_soname() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let soname = format!(
        "libadam8bit.so.{}`",
        adam8bit::ffi::types::BNB_ADAM8BIT_ABI_VERSION
    );
    assert!(readme.contains(&soname), "README.md lacks `{soname}");
}
