//! vigil-ffi: the C ABI of vigil, declared in `include/vigil.h`.
//!
//! Every export is `extern "C"`, never unwinds across the boundary, and is listed in the header.

/// Major version, mirrored by `VIGIL_VERSION_MAJOR` in the header.
pub const VERSION_MAJOR: u32 = 0;
/// Minor version, mirrored by `VIGIL_VERSION_MINOR`.
pub const VERSION_MINOR: u32 = 1;
/// Patch version, mirrored by `VIGIL_VERSION_PATCH`.
pub const VERSION_PATCH: u32 = 0;

/// The library's version as `major * 1_000_000 + minor * 1_000 + patch`, the same encoding as
/// `VIGIL_VERSION_NUMBER`, so a host can compare the header it compiled against with the library
/// it loaded.
#[no_mangle]
pub extern "C" fn vigil_version_number() -> u32 {
    VERSION_MAJOR * 1_000_000 + VERSION_MINOR * 1_000 + VERSION_PATCH
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_number_matches_cargo_package_version() {
        let parts: Vec<u32> = env!("CARGO_PKG_VERSION")
            .split('.')
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(
            vigil_version_number(),
            parts[0] * 1_000_000 + parts[1] * 1_000 + parts[2]
        );
    }
}
