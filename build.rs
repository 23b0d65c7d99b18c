fn main() {
    // Programs linked against the shared library record this name, not the build path.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libadam8bit.so");
    println!("cargo:rerun-if-changed=build.rs");
}
