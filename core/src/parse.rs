//! Byte-level scanning shared by every /proc and cgroup parser: lines, whitespace fields,
//! unsigned decimals and fixed-point decimals. Nothing here allocates or panics on any input.

/// What was wrong with the bytes. Carried inside the per-file errors with the line it was on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    pub kind: ParseErrorKind,
    pub line: u32,
}

impl ParseError {
    pub const fn new(kind: ParseErrorKind, line: u32) -> Self {
        Self { kind, line }
    }
}

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

/// Lines of a text file. The final line is yielded even without a trailing newline; each line
/// comes with its 1-based number for error messages.
#[derive(Clone)]
pub struct Lines<'a> {
    rest: &'a [u8],
    number: u32,
}

impl<'a> Lines<'a> {
    pub fn new(text: &'a [u8]) -> Self {
        Self {
            rest: text,
            number: 0,
        }
    }

    /// Skips the rest of the current position's line without looking at its fields (used for
    /// the `intr` line of /proc/stat, which can be hundreds of KiB).
    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (u32, &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        self.number = self.number.saturating_add(1);
        let line = match memchr::memchr(b'\n', self.rest) {
            Some(end) => {
                let line = &self.rest[..end];
                self.rest = &self.rest[end + 1..];
                line
            }
            None => core::mem::take(&mut self.rest),
        };
        Some((self.number, line))
    }
}

/// Whitespace-separated fields of one line (spaces and tabs).
#[inline]
pub fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    line.split(|&b| b == b' ' || b == b'\t')
        .filter(|f| !f.is_empty())
}

/// Splits `key value...` at the first whitespace; the value has leading blanks removed.
#[inline]
pub fn split_key(line: &[u8]) -> (&[u8], &[u8]) {
    let end = line
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(line.len());
    let (key, rest) = line.split_at(end);
    (key, trim(rest))
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
    fn lines_number_from_one_and_keep_an_unterminated_last_line() {
        let got: heapless::Vec<(u32, &[u8]), 4> = Lines::new(b"a\nb b\nc").collect();
        assert_eq!(got.as_slice(), &[(1, &b"a"[..]), (2, b"b b"), (3, b"c")]);
        assert_eq!(Lines::new(b"").count(), 0);
        assert_eq!(Lines::new(b"\n").count(), 1);
    }

    #[test]
    fn fields_skip_runs_of_blanks() {
        let got: heapless::Vec<&[u8], 4> = fields(b"  cpu0\t 1  2 ").collect();
        assert_eq!(got.as_slice(), &[&b"cpu0"[..], b"1", b"2"]);
        assert_eq!(
            split_key(b"MemTotal:   123 kB"),
            (&b"MemTotal:"[..], &b"123 kB"[..])
        );
        assert_eq!(split_key(b"lonely"), (&b"lonely"[..], &b""[..]));
    }
}
