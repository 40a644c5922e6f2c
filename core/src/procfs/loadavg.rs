//! /proc/loadavg: `0.52 0.58 0.59 2/345 12345`.
use crate::parse::{parse_hundredths, parse_u32, Cursor, ParseError, ParseErrorKind};

/// Load averages in hundredths (`0.52` -> 52), runnable and total scheduling entities, and the
/// last pid handed out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoadAvg {
    /// 1-minute load average, in hundredths (`0.52` -> 52).
    pub load1_centi: u32,
    /// 5-minute load average, in hundredths.
    pub load5_centi: u32,
    /// 15-minute load average, in hundredths.
    pub load15_centi: u32,
    /// Scheduling entities (threads) runnable right now, the one reading included.
    pub runnable: u32,
    /// Scheduling entities (threads) that exist on the host.
    pub entities: u32,
    /// The pid most recently handed out.
    pub last_pid: u32,
}

impl LoadAvg {
    /// Parses the single line of /proc/loadavg.
    pub fn parse(text: &[u8]) -> Result<Self, ParseError> {
        let err = |k| ParseError::new(k, 1);
        let mut c = Cursor::new(text);
        let mut next = || match c.token() {
            b"" => Err(err(ParseErrorKind::MissingField)),
            token => Ok(token),
        };
        let centi = |b: &[u8]| {
            parse_hundredths(b)
                .and_then(|v| u32::try_from(v).map_err(|_| ParseErrorKind::Overflow))
                .map_err(err)
        };
        let load1_centi = centi(next()?)?;
        let load5_centi = centi(next()?)?;
        let load15_centi = centi(next()?)?;
        let sched = next()?;
        let slash = crate::find::byte(b'/', sched).ok_or(err(ParseErrorKind::Malformed))?;
        let runnable = parse_u32(&sched[..slash]).map_err(err)?;
        let entities = parse_u32(&sched[slash + 1..]).map_err(err)?;
        let last_pid = parse_u32(next()?).map_err(err)?;
        Ok(Self {
            load1_centi,
            load5_centi,
            load15_centi,
            runnable,
            entities,
            last_pid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_real_line() {
        let l = LoadAvg::parse(b"0.52 0.58 0.59 2/345 12345\n").unwrap();
        assert_eq!(
            l,
            LoadAvg {
                load1_centi: 52,
                load5_centi: 58,
                load15_centi: 59,
                runnable: 2,
                entities: 345,
                last_pid: 12345
            }
        );
        let big = LoadAvg::parse(b"123.45 0.00 10.10 100/2000 4194303").unwrap();
        assert_eq!(big.load1_centi, 12345);
    }

    #[test]
    fn rejects_damaged_lines() {
        for bad in [
            &b""[..],
            b"0.52 0.58",
            b"0.52 0.58 0.59 2345 1",
            b"0.52 0.58 0.59 2/ 1",
            b"0.52 x 0.59 2/3 1",
            b"0.52 0.58 0.59 2/3",
            b"99999999999999999.00 0 0 1/1 1",
        ] {
            assert!(
                LoadAvg::parse(bad).is_err(),
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
    }
}
