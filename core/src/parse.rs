//! Byte-level scanning shared by every /proc and cgroup parser: lines, whitespace fields,
//! unsigned decimals and fixed-point decimals. Nothing here allocates or panics on any input.

/// What was wrong with the bytes. Carried inside the per-file errors with the line it was on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// A field that must be a number was empty.
    Empty,
    /// A byte that is not an ASCII digit where a digit was expected.
    NotADigit,
    /// The number does not fit its type.
    Overflow,
    /// A line has fewer fields than the format requires.
    MissingField,
    /// A required line or key is absent from the file.
    MissingLine,
    /// A line that does not belong to the format.
    Malformed,
}

/// A parse failure: what, and on which line (1-based; 0 when it concerns the whole file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError {
    /// What was wrong.
    pub kind: ParseErrorKind,
    /// The line it was on (1-based), or 0 for the whole file.
    pub line: u32,
}

impl ParseError {
    /// A failure of `kind` on `line`.
    pub const fn new(kind: ParseErrorKind, line: u32) -> Self {
        Self { kind, line }
    }
}

impl core::error::Error for ParseError {}

impl core::fmt::Display for ParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let what = match self.kind {
            ParseErrorKind::Empty => "empty number",
            ParseErrorKind::NotADigit => "non-digit byte in a number",
            ParseErrorKind::Overflow => "number too large",
            ParseErrorKind::MissingField => "too few fields",
            ParseErrorKind::MissingLine => "required line missing",
            ParseErrorKind::Malformed => "malformed line",
        };
        if self.line == 0 {
            f.write_str(what)
        } else {
            write!(f, "{what} on line {}", self.line)
        }
    }
}

/// Parses an unsigned decimal. No sign, no spaces, no empty input.
#[inline]
pub fn parse_u64(bytes: &[u8]) -> Result<u64, ParseErrorKind> {
    if bytes.is_empty() {
        return Err(ParseErrorKind::Empty);
    }
    let mut value: u64 = 0;
    for &b in bytes {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return Err(ParseErrorKind::NotADigit);
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or(ParseErrorKind::Overflow)?;
    }
    Ok(value)
}

/// Parses a `u32` decimal (ids, counts).
#[inline]
pub fn parse_u32(bytes: &[u8]) -> Result<u32, ParseErrorKind> {
    let v = parse_u64(bytes)?;
    u32::try_from(v).map_err(|_| ParseErrorKind::Overflow)
}

/// Parses a non-negative decimal with up to two fraction digits (`6.17`, `0.5`, `12`) into
/// hundredths: `6.17` -> 617. More fraction digits are truncated, as the kernel prints two.
#[inline]
pub fn parse_hundredths(bytes: &[u8]) -> Result<u64, ParseErrorKind> {
    let (int_part, frac_part) = match memchr::memchr(b'.', bytes) {
        Some(dot) => (&bytes[..dot], &bytes[dot + 1..]),
        None => (bytes, &b""[..]),
    };
    let whole = parse_u64(int_part)?;
    let mut frac: u64 = 0;
    let mut scale: u64 = 100;
    for &b in frac_part {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return Err(ParseErrorKind::NotADigit);
        }
        if scale > 1 {
            scale /= 10;
            frac += u64::from(digit) * scale;
        }
    }
    if frac_part.is_empty() && bytes.len() != int_part.len() {
        // "6." has a dot with no digits after it.
        return Err(ParseErrorKind::Empty);
    }
    whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(frac))
        .ok_or(ParseErrorKind::Overflow)
}

/// A forward-only reader over a text file for single-pass parsers: every byte is looked at
/// about once, numbers are built while their digits are read, and the rest of a line is
/// crossed with one SIMD newline search. It tracks the 1-based line number for errors.
#[derive(Clone)]
pub struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: u32,
}

#[inline]
fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The first position at or after `pos` that is not a blank. /proc/meminfo pads every value
/// with runs of spaces, so spaces are skipped eight at a time.
#[inline]
fn skip_blanks_from(bytes: &[u8], mut pos: usize) -> usize {
    const SPACES: u64 = u64::from_le_bytes([b' '; 8]);
    while let Some(chunk) = bytes.get(pos..pos + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let diff = u64::from_le_bytes(word) ^ SPACES;
        if diff == 0 {
            pos += 8;
            continue;
        }
        // Little-endian: the lowest non-zero byte of `diff` is the first non-space.
        pos += (diff.trailing_zeros() / 8) as usize;
        if bytes[pos] != b'\t' {
            return pos;
        }
        pos += 1;
    }
    while pos < bytes.len() && is_blank(bytes[pos]) {
        pos += 1;
    }
    pos
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            line: 1,
        }
    }

    /// True when every byte has been consumed.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// The current line's number (1-based).
    #[inline]
    pub fn line(&self) -> u32 {
        self.line
    }

    /// What has not been consumed yet.
    #[inline]
    pub fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or(&[])
    }

    /// An error of `kind` on the current line.
    #[inline]
    pub fn error(&self, kind: ParseErrorKind) -> ParseError {
        ParseError::new(kind, self.line)
    }

    #[inline]
    pub fn skip_blanks(&mut self) {
        self.pos = skip_blanks_from(self.bytes, self.pos);
    }

    /// True at a newline or at the end of the text (blanks are not skipped).
    #[inline]
    pub fn at_line_end(&self) -> bool {
        self.bytes.get(self.pos).is_none_or(|&b| b == b'\n')
    }

    /// Moves to the start of the next line, skipping whatever is left of this one.
    #[inline]
    pub fn next_line(&mut self) {
        // Parsers usually stop right at the newline: skip the search call then.
        if self.bytes.get(self.pos) == Some(&b'\n') {
            self.pos += 1;
        } else {
            match memchr::memchr(b'\n', self.rest()) {
                Some(i) => self.pos += i + 1,
                None => self.pos = self.bytes.len(),
            }
        }
        self.line = self.line.saturating_add(1);
    }

    /// After blanks, the bytes up to the next blank or newline (empty at the line's end).
    #[inline]
    pub fn token(&mut self) -> &'a [u8] {
        let bytes = self.bytes;
        let mut pos = skip_blanks_from(bytes, self.pos);
        let start = pos;
        while pos < bytes.len() && !is_blank(bytes[pos]) && bytes[pos] != b'\n' {
            pos += 1;
        }
        self.pos = pos;
        &bytes[start..pos]
    }

    /// After blanks, an unsigned decimal ended by a blank, a newline or the end of the text;
    /// `None` when the line has no more fields.
    #[inline]
    pub fn number(&mut self) -> Result<Option<u64>, ParseErrorKind> {
        // Work on locals with bounds the optimiser can see: this loop is the parsers' hot path.
        let bytes = self.bytes;
        let mut pos = skip_blanks_from(bytes, self.pos);
        let start = pos;
        // Nineteen digits always fit in a u64: no overflow checks until then.
        let fast_end = bytes.len().min(start + 19);
        let mut value: u64 = 0;
        while pos < fast_end {
            let digit = bytes[pos].wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            value = value * 10 + u64::from(digit);
            pos += 1;
        }
        if pos == fast_end {
            while let Some(digit) = bytes.get(pos).map(|b| b.wrapping_sub(b'0')) {
                if digit > 9 {
                    break;
                }
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(digit)))
                    .ok_or(ParseErrorKind::Overflow)?;
                pos += 1;
            }
        }
        self.pos = pos;
        let digits = self.pos > start;
        match self.bytes.get(self.pos) {
            None | Some(b' ' | b'\t' | b'\n') if digits => Ok(Some(value)),
            None | Some(b'\n') => Ok(None),
            Some(_) => Err(ParseErrorKind::NotADigit),
        }
    }
}

/// Removes ASCII blanks and a trailing newline from both ends.
#[inline]
pub fn trim(bytes: &[u8]) -> &[u8] {
    let is_blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = bytes
        .iter()
        .position(|b| !is_blank(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_blank(b))
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_accepts_digits_and_rejects_everything_else() {
        assert_eq!(parse_u64(b"0"), Ok(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_u64(b"18446744073709551616"),
            Err(ParseErrorKind::Overflow)
        );
        assert_eq!(parse_u64(b""), Err(ParseErrorKind::Empty));
        assert_eq!(parse_u64(b"12a"), Err(ParseErrorKind::NotADigit));
        assert_eq!(parse_u64(b"-1"), Err(ParseErrorKind::NotADigit));
        assert_eq!(parse_u64(b"1 "), Err(ParseErrorKind::NotADigit));
    }

    #[test]
    fn hundredths_read_kernel_fixed_point() {
        assert_eq!(parse_hundredths(b"6.17"), Ok(617));
        assert_eq!(parse_hundredths(b"0.00"), Ok(0));
        assert_eq!(parse_hundredths(b"0.5"), Ok(50));
        assert_eq!(parse_hundredths(b"12"), Ok(1200));
        assert_eq!(parse_hundredths(b"1.239"), Ok(123));
        assert_eq!(parse_hundredths(b"1."), Err(ParseErrorKind::Empty));
        assert_eq!(parse_hundredths(b".5"), Err(ParseErrorKind::Empty));
        assert_eq!(parse_hundredths(b"1.x"), Err(ParseErrorKind::NotADigit));
        assert_eq!(
            parse_hundredths(b"18446744073709551615"),
            Err(ParseErrorKind::Overflow)
        );
    }

    #[test]
    fn cursor_reads_tokens_and_numbers_line_by_line() {
        let mut c =
            Cursor::new(b"cpu0\t 1  2 \nx 18446744073709551615\n3a\n00000000000000000000042");
        assert_eq!(c.token(), b"cpu0");
        assert_eq!(c.number(), Ok(Some(1)));
        assert_eq!(c.number(), Ok(Some(2)));
        assert_eq!(c.number(), Ok(None));
        assert!(c.at_line_end());
        c.next_line();
        assert_eq!(c.line(), 2);
        assert_eq!(c.token(), b"x");
        assert_eq!(c.number(), Ok(Some(u64::MAX)));
        c.next_line();
        assert_eq!(c.number(), Err(ParseErrorKind::NotADigit));
        c.next_line();
        assert_eq!(c.number(), Ok(Some(42)), "leading zeros beyond 19 digits");
        assert!(c.is_empty());
        assert_eq!(
            Cursor::new(b"18446744073709551616").number(),
            Err(ParseErrorKind::Overflow)
        );
        assert_eq!(Cursor::new(b"").number(), Ok(None));
        assert_eq!(Cursor::new(b"  \n").token(), b"");
        let mut long = Cursor::new(b"k:            \t    \t 7\t\t\t\t\t\t\t\t\t x");
        assert_eq!(long.token(), b"k:");
        assert_eq!(long.number(), Ok(Some(7)));
        assert_eq!(long.token(), b"x");
        assert!(long.is_empty());
    }
}
