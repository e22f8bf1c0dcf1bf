//! Gives libipn.so its versioned soname, so that programs linked with
//! `-lipn` record `libipn.so.0` and keep working across compatible
//! releases (see the ABI rules in include/ipn.h).

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libipn.so.0");
    println!("cargo:rerun-if-changed=build.rs");
}
