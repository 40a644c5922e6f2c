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
    if bytes.len() <= 8 {
        // Right-aligned in a word of '0's: leading zeros do not change the number, so all
        // eight bytes must be digits and one conversion reads them.
        let mut word = [b'0'; 8];
        word[8 - bytes.len()..].copy_from_slice(bytes);
        return match leading_digits(u64::from_le_bytes(word)) {
            (8, value) => Ok(value),
            _ => Err(ParseErrorKind::NotADigit),
        };
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
    let (int_part, frac_part) = match crate::find::byte(b'.', bytes) {
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
    /// A cursor at the start of `bytes`, on line 1.
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

    /// Moves past spaces and tabs (not newlines).
    #[inline]
    pub fn skip_blanks(&mut self) {
        self.pos = skip_blanks_from(self.bytes, self.pos);
    }

    /// The next eight bytes as a little-endian word (the first byte lowest), zero-filled past
    /// the end of the text.
    #[inline]
    pub fn peek_word(&self) -> u64 {
        if let Some(word) = load_word(self.bytes, self.pos) {
            return word;
        }
        let mut word = [0u8; 8];
        let rest = self.rest();
        word[..rest.len()].copy_from_slice(rest);
        u64::from_le_bytes(word)
    }

    /// Consumes `prefix` if the text continues with it.
    #[inline]
    pub fn eat(&mut self, prefix: &[u8]) -> bool {
        if self.rest().starts_with(prefix) {
            self.pos += prefix.len();
            true
        } else {
            false
        }
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
        } else if let Some(i) = newline_in_next_words(self.bytes, self.pos) {
            // Most lines end within a few words: cheaper than a call into the SIMD search.
            self.pos += i + 1;
        } else {
            match crate::find::byte(b'\n', self.rest()) {
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
        // Byte by byte: keys and labels are short, and eight bytes at a time measured slower.
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
        let start = skip_blanks_from(self.bytes, self.pos);
        self.digits_from(start)
    }

    /// Reads numbers as [`Cursor::number`] would, into `out` in order, until the line has no
    /// more fields or `out` is full; how many were read. The same results and errors as that
    /// loop, in one tight loop for the long numeric lines of /proc/stat. (Eight bytes at a time
    /// was measured slower here: each field's position then waits on the previous field's
    /// arithmetic, where predicted branches let the next field start early.)
    #[inline]
    pub fn numbers(&mut self, out: &mut [u64]) -> Result<usize, ParseErrorKind> {
        let bytes = self.bytes;
        let mut pos = self.pos;
        let mut n = 0;
        while n < out.len() {
            // The common case: one space, then up to 19 digits and the blank or newline that
            // ends them. Digit by digit: the branches predict well and keep the next field's
            // position off the arithmetic's dependency chain.
            let start = pos + usize::from(bytes.get(pos) == Some(&b' '));
            let (p, fast_end, value) = short_digits(bytes, start);
            if p > start && p < fast_end {
                if let b' ' | b'\t' | b'\n' = bytes[p] {
                    out[n] = value;
                    n += 1;
                    pos = p;
                    continue;
                }
            }
            // Runs of blanks, the line's end, damage, long numbers, the end of the text.
            self.pos = pos;
            match self.number()? {
                Some(value) => {
                    out[n] = value;
                    n += 1;
                    pos = self.pos;
                }
                None => {
                    pos = self.pos;
                    break;
                }
            }
        }
        self.pos = pos;
        Ok(n)
    }

    /// The number whose digits start at `start` (digit by digit: the branches predict well,
    /// and eight bytes at a time measured slower on these short fields).
    #[inline]
    fn digits_from(&mut self, start: usize) -> Result<Option<u64>, ParseErrorKind> {
        let bytes = self.bytes;
        let (mut pos, fast_end, mut value) = short_digits(bytes, start);
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

/// The digits from `start`, at most nineteen (which always fit a u64: no overflow checks):
/// where they stop, where the nineteenth would end (or the text does), and their value.
#[inline(always)]
fn short_digits(bytes: &[u8], start: usize) -> (usize, usize, u64) {
    let fast_end = bytes.len().min(start + 19);
    let mut pos = start;
    let mut value: u64 = 0;
    while pos < fast_end {
        let digit = bytes[pos].wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        value = value * 10 + u64::from(digit);
        pos += 1;
    }
    (pos, fast_end, value)
}

const ONES: u64 = u64::from_le_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
const ZEROS: u64 = u64::from_le_bytes([b'0'; 8]);

/// A word whose lowest flagged byte (top bit set) is the first zero byte of `v`. Bytes above
/// the first zero may be flagged falsely (the borrow runs upwards); below it, none is.
#[inline]
fn zero_bytes(v: u64) -> u64 {
    v.wrapping_sub(ONES) & !v & HIGHS
}

/// The offset from `pos` of the first newline within the next four whole words, if any.
#[inline]
fn newline_in_next_words(bytes: &[u8], pos: usize) -> Option<usize> {
    for k in 0..4 {
        let word = load_word(bytes, pos + 8 * k)?;
        let newlines = zero_bytes(word ^ (b'\n' as u64 * ONES));
        if newlines != 0 {
            return Some(8 * k + (newlines.trailing_zeros() / 8) as usize);
        }
    }
    None
}

/// The eight bytes at `pos` as a little-endian word (the first byte lowest), if there are eight.
#[inline]
fn load_word(bytes: &[u8], pos: usize) -> Option<u64> {
    let chunk: [u8; 8] = bytes.get(pos..pos.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

/// How many of the word's first bytes are ASCII digits (0..=8), and their value.
///
/// After subtracting `'0'` from every byte, a byte was a digit exactly when it is below 10:
/// its top bit is clear both as it is and after adding 0x76 (118 + 9 = 127). Borrows and carries
/// only run upwards, into bytes after the first non-digit, whose flags are not used.
#[inline]
fn leading_digits(word: u64) -> (usize, u64) {
    let x = word.wrapping_sub(ZEROS);
    let not_digit = (x | x.wrapping_add(0x76 * ONES)) & HIGHS;
    let n = (not_digit.trailing_zeros() / 8) as usize;
    if n <= 1 {
        // Zero or one digit (counters that stay zero are common): no arithmetic needed.
        return (n, x & (n as u64 * 0xFF));
    }
    // Move the n digits to the top bytes; the bytes shifted in are zeros, leading zeros of the
    // number. Then pairs, quads and the whole: 8 digits in three multiplications.
    let x = x << (8 * (8 - n));
    let x = x.wrapping_mul(10).wrapping_add(x >> 8);
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    const MUL1: u64 = 100 + (1_000_000 << 32);
    const MUL2: u64 = 1 + (10_000 << 32);
    let v = ((x & MASK)
        .wrapping_mul(MUL1)
        .wrapping_add(((x >> 16) & MASK).wrapping_mul(MUL2)))
        >> 32;
    (n, v)
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
mod tests;
