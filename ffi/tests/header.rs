//! include/vigil.h is exactly what cbindgen generates from this crate with ffi/cbindgen.toml.
//! `VIGIL_BLESS_HEADER=1 cargo test -p vigil-ffi --test header` rewrites it.
use std::path::Path;

#[test]
fn header_matches_the_generated_one() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let path = crate_dir.join("../include/vigil.h");
    if std::env::var_os("VIGIL_BLESS_HEADER").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap();
    assert!(
        committed == generated,
        "include/vigil.h is out of date: run VIGIL_BLESS_HEADER=1 cargo test -p vigil-ffi --test header"
    );
}
