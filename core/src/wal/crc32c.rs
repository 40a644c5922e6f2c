//! CRC32C (Castagnoli), the checksum of every WAL frame and segment header.
//!
//! no_std and allocation-free. On x86_64 the SSE4.2 `crc32` instruction is used when the CPU
//! has it (detected once with `cpuid`, which `core` provides, so the no_std build keeps the
//! hardware path); elsewhere a slicing-by-8 table computed at compile time. The common crates
//! for this need `std`, which the frame codec must not.

use core::sync::atomic::{AtomicU8, Ordering};

/// The reflected Castagnoli polynomial.
const POLYNOMIAL: u32 = 0x82F6_3B78;

/// Slicing-by-8 tables, built at compile time.
static TABLES: [[u32; 256]; 8] = build_tables();

const fn build_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLYNOMIAL
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][i] = crc;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut t = 1;
        while t < 8 {
            let prev = tables[t - 1][i];
            tables[t][i] = (prev >> 8) ^ tables[0][(prev & 0xFF) as usize];
            t += 1;
        }
        i += 1;
    }
    tables
}

/// CRC32C of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c_append(0, bytes)
}

/// Continues `crc` (a finished CRC32C of earlier bytes) over `bytes`, so that
/// `crc32c_append(crc32c(a), b) == crc32c(a ++ b)`.
pub fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    !update(!crc, bytes)
}

const DETECT_UNKNOWN: u8 = 0;
const DETECT_HARDWARE: u8 = 1;
const DETECT_SOFTWARE: u8 = 2;
static DETECTED: AtomicU8 = AtomicU8::new(DETECT_UNKNOWN);

fn update(state: u32, bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        let mut detected = DETECTED.load(Ordering::Relaxed);
        if detected == DETECT_UNKNOWN {
            detected = if has_sse42() {
                DETECT_HARDWARE
            } else {
                DETECT_SOFTWARE
            };
            DETECTED.store(detected, Ordering::Relaxed);
        }
        if detected == DETECT_HARDWARE {
            // SAFETY: the CPU reported SSE4.2 through cpuid.
            return unsafe { update_sse42(state, bytes) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (
        &DETECTED,
        DETECT_HARDWARE,
        DETECT_SOFTWARE,
        Ordering::Relaxed,
    );
    update_software(state, bytes)
}

#[cfg(target_arch = "x86_64")]
fn has_sse42() -> bool {
    // cpuid leaf 1, ECX bit 20 = SSE4.2. `__cpuid` is always available on x86_64.
    #[allow(unused_unsafe)]
    // SAFETY: cpuid has no preconditions on x86_64 (safe to call on newer compilers).
    let leaf1 = unsafe { core::arch::x86_64::__cpuid(1) };
    leaf1.ecx & (1 << 20) != 0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn update_sse42(mut state: u32, bytes: &[u8]) -> u32 {
    use core::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut chunks = bytes.chunks_exact(8);
    let mut state64 = state as u64;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        state64 = _mm_crc32_u64(state64, u64::from_le_bytes(word));
    }
    state = state64 as u32;
    for &byte in chunks.remainder() {
        state = _mm_crc32_u8(state, byte);
    }
    state
}

/// Table-driven fallback, also the reference the hardware path is tested against.
pub(crate) fn update_software(mut state: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let low = state ^ u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        state = TABLES[7][(low & 0xFF) as usize]
            ^ TABLES[6][((low >> 8) & 0xFF) as usize]
            ^ TABLES[5][((low >> 16) & 0xFF) as usize]
            ^ TABLES[4][(low >> 24) as usize]
            ^ TABLES[3][chunk[4] as usize]
            ^ TABLES[2][chunk[5] as usize]
            ^ TABLES[1][chunk[6] as usize]
            ^ TABLES[0][chunk[7] as usize];
    }
    for &byte in chunks.remainder() {
        state = (state >> 8) ^ TABLES[0][((state ^ byte as u32) & 0xFF) as usize];
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors_match_the_castagnoli_check_values() {
        // The standard check value of CRC-32C, and RFC 3720 (iSCSI) B.4 vectors.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let ascending: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(crc32c(&ascending), 0x46DD_794E);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn software_and_dispatched_paths_agree_at_every_length_and_split() {
        let data: [u8; 300] = core::array::from_fn(|i| (i as u8).wrapping_mul(31).wrapping_add(7));
        for len in 0..data.len() {
            let soft = !update_software(!0, &data[..len]);
            assert_eq!(crc32c(&data[..len]), soft, "len {len}");
            let split = len / 3;
            assert_eq!(
                crc32c_append(crc32c(&data[..split]), &data[split..len]),
                soft
            );
        }
    }
}
