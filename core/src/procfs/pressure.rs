//! /proc/pressure/{cpu,memory,io} and cgroup v2 `*.pressure` files (PSI).
//!
//! `some` is always present; `full` is absent for cpu before Linux 5.13 and all zero at the
//! system level since then.
use crate::parse::{parse_hundredths, parse_u64, Cursor, ParseError, ParseErrorKind};

/// One PSI line: share of wall time stalled, averaged over 10/60/300 s, in hundredths of a
/// percent (`6.17` -> 617), and the total stall time in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PsiLine {
    /// Share of wall time stalled over the last 10 s, in hundredths of a percent (0..=10000).
    pub avg10_centi: u32,
    /// Share of wall time stalled over the last 60 s, in hundredths of a percent (0..=10000).
    pub avg60_centi: u32,
    /// Share of wall time stalled over the last 300 s, in hundredths of a percent (0..=10000).
    pub avg300_centi: u32,
    /// Total stall time since boot, in µs.
    pub total_us: u64,
}

/// A whole PSI file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Psi {
    /// At least one task was stalled on the resource.
    pub some: PsiLine,
    /// Every non-idle task was stalled at once; `None` when the file has no `full` line (cpu before
    /// Linux 5.13).
    pub full: Option<PsiLine>,
}

impl Psi {
    /// Parses a PSI file; `some` is required, unknown lines are ignored.
    pub fn parse(text: &[u8]) -> Result<Self, ParseError> {
        let mut some = None;
        let mut full = None;
        let mut c = Cursor::new(text);
        while !c.is_empty() {
            let slot = match c.token() {
                b"some" => &mut some,
                b"full" => &mut full,
                _ => {
                    c.next_line();
                    continue;
                }
            };
            *slot = Some(PsiLine::parse_fields(&mut c).map_err(|k| c.error(k))?);
            c.next_line();
        }
        Ok(Self {
            some: some.ok_or(ParseError::new(ParseErrorKind::MissingLine, 0))?,
            full,
        })
    }
}

impl PsiLine {
    fn parse_fields(c: &mut Cursor<'_>) -> Result<Self, ParseErrorKind> {
        let mut out = Self::default();
        let mut seen = 0u8;
        loop {
            let kv = c.token();
            if kv.is_empty() {
                break;
            }
            let eq = crate::find::byte(b'=', kv).ok_or(ParseErrorKind::Malformed)?;
            let (key, value) = (&kv[..eq], &kv[eq + 1..]);
            let centi = || -> Result<u32, ParseErrorKind> {
                u32::try_from(parse_hundredths(value)?).map_err(|_| ParseErrorKind::Overflow)
            };
            match key {
                b"avg10" => (out.avg10_centi, seen) = (centi()?, seen | 1),
                b"avg60" => (out.avg60_centi, seen) = (centi()?, seen | 2),
                b"avg300" => (out.avg300_centi, seen) = (centi()?, seen | 4),
                b"total" => (out.total_us, seen) = (parse_u64(value)?, seen | 8),
                _ => {}
            }
        }
        if seen != 0b1111 {
            return Err(ParseErrorKind::MissingField);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_some_and_full() {
        let p = Psi::parse(
            b"some avg10=6.17 avg60=5.12 avg300=1.47 total=4968521\n\
full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        )
        .unwrap();
        assert_eq!(p.some.avg10_centi, 617);
        assert_eq!(p.some.avg300_centi, 147);
        assert_eq!(p.some.total_us, 4968521);
        assert_eq!(p.full, Some(PsiLine::default()));
    }

    #[test]
    fn only_some_is_fine() {
        let p = Psi::parse(b"some avg10=0.10 avg60=0.20 avg300=0.30 total=7").unwrap();
        assert_eq!(p.full, None);
        assert_eq!(p.some.avg60_centi, 20);
    }

    #[test]
    fn damaged_files_are_errors() {
        for bad in [
            &b""[..],
            b"full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
            b"some avg10=0.00 avg60=0.00 total=0\n",
            b"some avg10=x avg60=0.00 avg300=0.00 total=0\n",
            b"some avg10 avg60=0.00 avg300=0.00 total=0\n",
            b"some avg10=0.00 avg60=0.00 avg300=0.00 total=-1\n",
        ] {
            assert!(Psi::parse(bad).is_err(), "{:?}", core::str::from_utf8(bad));
        }
    }
}
