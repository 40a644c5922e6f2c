//! /proc/PID/stat: `1234 (some (comm)) S 1 1234 1234 0 -1 4194560 ... 22 ...`.
//!
//! The second field, the command name in parentheses, is chosen by the process and may hold
//! spaces and parentheses of its own (`prctl(PR_SET_NAME)`, or a program named `a) R 1 1`), so
//! the fields after it are found from the *last* `)` of the line. The kernel writes nothing
//! after the numeric fields that could hold one.
use crate::parse::{parse_u64, ParseError, ParseErrorKind};

/// Position of `starttime` among the fields after the command name (field 22 of proc(5), the
/// 20th after `comm`; `state` is the first).
const START_TIME_AFTER_COMM: usize = 20;
/// Position of `utime` among the fields after the command name (field 14 of proc(5)).
const UTIME_AFTER_COMM: usize = 12;

/// The fields of /proc/PID/stat that vigil uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PidStat {
    /// Process id (field 1).
    pub pid: i32,
    /// One-letter state (field 3): `R`, `S`, `D`, `Z` (zombie), `T`, `t`, `X`/`x` (dead), `I`...
    /// Always an ASCII graphic character.
    pub state: u8,
    /// Parent process id (field 4).
    pub ppid: i32,
    /// Process group id (field 5).
    pub pgrp: i32,
    /// Session id (field 6).
    pub session: i32,
    /// User-mode CPU time in clock ticks (field 14).
    pub utime_ticks: u64,
    /// Kernel-mode CPU time in clock ticks (field 15).
    pub stime_ticks: u64,
    /// Clock ticks after boot at which the process started (field 22).
    pub start_ticks: u64,
}

impl PidStat {
    /// True for a process that has exited (a zombie not yet reaped, or one being torn down).
    pub fn is_dead(&self) -> bool {
        matches!(self.state, b'Z' | b'X' | b'x')
    }

    /// Parses the single line of /proc/PID/stat. Never panics; allocates nothing.
    pub fn parse(text: &[u8]) -> Result<PidStat, ParseError> {
        let err = |k| ParseError::new(k, 1);
        let open = crate::find::byte(b'(', text).ok_or(err(ParseErrorKind::Malformed))?;
        let close = crate::find::byte_rev(b')', text).ok_or(err(ParseErrorKind::Malformed))?;
        if close < open {
            return Err(err(ParseErrorKind::Malformed));
        }
        let pid = pid_field(trim_blanks(&text[..open])).map_err(err)?;
        let mut fields = text[close + 1..]
            .split(|b| matches!(b, b' ' | b'\t' | b'\n'))
            .filter(|f| !f.is_empty());
        let mut next = || fields.next().ok_or(err(ParseErrorKind::MissingField));
        let state = match next()? {
            [s] if s.is_ascii_graphic() => *s,
            _ => return Err(err(ParseErrorKind::Malformed)),
        };
        let ppid = pid_field(next()?).map_err(err)?;
        let pgrp = pid_field(next()?).map_err(err)?;
        let session = pid_field(next()?).map_err(err)?;
        // tty_nr .. cmajflt: not used (tpgid may be -1).
        for _ in 5..UTIME_AFTER_COMM {
            next()?;
        }
        let utime_ticks = parse_u64(next()?).map_err(err)?;
        let stime_ticks = parse_u64(next()?).map_err(err)?;
        // cutime .. itrealvalue: not used (priority and nice may be negative).
        for _ in UTIME_AFTER_COMM + 2..START_TIME_AFTER_COMM {
            next()?;
        }
        let start_ticks = parse_u64(next()?).map_err(err)?;
        Ok(PidStat {
            pid,
            state,
            ppid,
            pgrp,
            session,
            utime_ticks,
            stime_ticks,
            start_ticks,
        })
    }
}

/// A pid field: a non-negative decimal that fits a `pid_t` (0 where there is none, as the
/// parent of init).
fn pid_field(bytes: &[u8]) -> Result<i32, ParseErrorKind> {
    i32::try_from(parse_u64(bytes)?).map_err(|_| ParseErrorKind::Overflow)
}

fn trim_blanks(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASH: &[u8] = b"4242 (bash) S 4200 4242 4242 34816 4250 4194304 5290 33075 0 1 7 3 \
        41 20 20 0 1 0 889713 9879552 1280 18446744073709551615 1 1 0 0 0 0 65536 3670020 \
        1266777851 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn parses_a_real_line() {
        let st = PidStat::parse(BASH).unwrap();
        assert_eq!(
            st,
            PidStat {
                pid: 4242,
                state: b'S',
                ppid: 4200,
                pgrp: 4242,
                session: 4242,
                utime_ticks: 7,
                stime_ticks: 3,
                start_ticks: 889713,
            }
        );
        assert!(!st.is_dead());
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_is_skipped_whole() {
        let line = b"77 (a) R 1 1 1 (x) ) Z 5 6 7 0 -1 4194304 0 0 0 0 11 12 0 0 20 0 1 0 \
            555 0 0\n";
        let st = PidStat::parse(line).unwrap();
        assert_eq!(
            (st.pid, st.state, st.ppid, st.pgrp, st.session),
            (77, b'Z', 5, 6, 7)
        );
        assert_eq!(
            (st.utime_ticks, st.stime_ticks, st.start_ticks),
            (11, 12, 555)
        );
        assert!(st.is_dead());
        // An empty name, and a name that is only parentheses.
        for comm in [&b"()"[..], b"(()))"] {
            let mut line = b"9 ".to_vec();
            line.extend_from_slice(comm);
            line.extend_from_slice(b" S 1 9 9 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 3\n");
            let st = PidStat::parse(&line).unwrap();
            assert_eq!((st.pid, st.session, st.start_ticks), (9, 9, 3), "{comm:?}");
        }
    }

    #[test]
    fn damaged_lines_are_errors_not_panics() {
        let good = BASH;
        // Every prefix of a real line cut before starttime's first digit is an error.
        let start_at = good.windows(7).position(|w| w == b" 889713").unwrap() + 1;
        for cut in 0..=start_at {
            assert!(PidStat::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        for bad in [
            &b""[..],
            b")",
            b"(",
            b") 1 (",
            b"1 (x",
            b"x (sh) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 3",
            b"-1 (sh) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 3",
            b"1 (sh) SS 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 3",
            b"1 (sh) \x01 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 3",
            b"1 (sh) S -1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 3",
            b"1 (sh) S 1 1 99999999999 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 3",
            b"1 (sh) S 1 1 1 0 -1 0 0 0 0 0 x 2 0 0 20 0 1 0 3",
            b"1 (sh) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 99999999999999999999999",
            b"1 (sh) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 -3",
        ] {
            assert!(
                PidStat::parse(bad).is_err(),
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
    }

    #[cfg(feature = "std")]
    #[test]
    fn this_process_parses() {
        let text = std::fs::read("/proc/self/stat").unwrap();
        let st = PidStat::parse(&text).unwrap();
        assert_eq!(st.pid, std::process::id() as i32);
        assert_eq!(st.ppid, std::os::unix::process::parent_id() as i32);
        assert!(!st.is_dead());
    }
}
