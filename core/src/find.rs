//! Byte and substring search that never asks the CPU what it has.
//!
//! `memchr`'s top-level functions (`memchr::memchr`, `memchr::memmem::find`) choose an AVX2 or
//! an SSE2 routine on first use through std's feature detection, which runs about ten `cpuid`
//! instructions at once. In a virtual machine each `cpuid` is a trap to the hypervisor (about
//! 3.5 us on the development VM), so the first search of a process cost about 40 us: a one-shot
//! `vigil run` paid it in its first /proc parse. These use the SSE2 routines every x86_64 CPU
//! has, and memchr's portable ones elsewhere: nothing is detected. The inputs searched here
//! (/proc text, one job record's strings) are small, where AVX2 gains little.

#[cfg(target_arch = "x86_64")]
use memchr::arch::x86_64::sse2::memchr::One;

/// The first `byte` in `hay`.
#[inline]
pub fn byte(byte: u8, hay: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(one) = One::new(byte) {
        return one.find(hay);
    }
    memchr::arch::all::memchr::One::new(byte).find(hay)
}

/// The last `byte` in `hay`.
#[inline]
pub fn byte_rev(byte: u8, hay: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(one) = One::new(byte) {
        return one.rfind(hay);
    }
    memchr::arch::all::memchr::One::new(byte).rfind(hay)
}

/// The first occurrence of `needle` in `hay` (at 0 for an empty needle), by the two-way
/// algorithm: linear in `hay`, no allocation, no detection.
#[inline]
pub fn bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::arch::all::twoway::Finder::new(needle).find(hay, needle)
}

/// Every non-overlapping occurrence of `needle` in `hay`, left to right (none for an empty
/// needle).
pub fn bytes_iter<'a>(hay: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    let finder = memchr::arch::all::twoway::Finder::new(needle);
    let mut at = 0;
    core::iter::from_fn(move || {
        if needle.is_empty() || at > hay.len() {
            return None;
        }
        let found = at + finder.find(&hay[at..], needle)?;
        at = found + needle.len();
        Some(found)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_search_agrees_with_memchr_on_every_length_and_position() {
        let mut hay = [b'a'; 70];
        for len in 0..hay.len() {
            for at in 0..len {
                hay[at] = b'x';
                let h = &hay[..len];
                assert_eq!(byte(b'x', h), memchr::memchr(b'x', h), "len {len} at {at}");
                assert_eq!(
                    byte_rev(b'x', h),
                    memchr::memrchr(b'x', h),
                    "len {len} at {at}"
                );
                assert_eq!(bytes(h, b"xa"), memchr::memmem::find(h, b"xa"));
                hay[at] = b'a';
            }
            assert_eq!(byte(b'x', &hay[..len]), None);
        }
        assert_eq!(bytes(b"abc", b""), Some(0));
    }

    #[test]
    fn the_iterator_finds_non_overlapping_occurrences_as_memmem_does() {
        for (hay, needle) in [
            (&b"aaaa"[..], &b"aa"[..]),
            (b"xyxyxy", b"xy"),
            (b"secret and secret", b"secret"),
            (b"", b"a"),
            (b"abc", b"abcd"),
        ] {
            let ours: Vec<usize> = bytes_iter(hay, needle).collect();
            let theirs: Vec<usize> = memchr::memmem::find_iter(hay, needle).collect();
            assert_eq!(ours, theirs, "{hay:?} {needle:?}");
        }
        assert_eq!(bytes_iter(b"abc", b"").count(), 0);
    }
}
