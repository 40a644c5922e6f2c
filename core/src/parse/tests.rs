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
    let mut c = Cursor::new(b"cpu0\t 1  2 \nx 18446744073709551615\n3a\n00000000000000000000042");
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

/// The digit-by-digit readings these word-at-a-time ones replaced: the reference.
fn reference_u64(bytes: &[u8]) -> Result<u64, ParseErrorKind> {
    if bytes.is_empty() {
        return Err(ParseErrorKind::Empty);
    }
    bytes.iter().try_fold(0u64, |v, &b| {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return Err(ParseErrorKind::NotADigit);
        }
        v.checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or(ParseErrorKind::Overflow)
    })
}

fn reference_number(bytes: &[u8], pos: usize) -> (Result<Option<u64>, ParseErrorKind>, usize) {
    let mut pos = pos;
    while pos < bytes.len() && is_blank(bytes[pos]) {
        pos += 1;
    }
    let start = pos;
    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    let digits = &bytes[start..pos];
    let end_ok = matches!(bytes.get(pos), None | Some(b' ' | b'\t' | b'\n'));
    let result = if digits.is_empty() {
        match bytes.get(pos) {
            None | Some(b'\n') => Ok(None),
            Some(_) => Err(ParseErrorKind::NotADigit),
        }
    } else {
        match reference_u64(digits) {
            Err(e) => return (Err(e), pos),
            Ok(v) if end_ok => Ok(Some(v)),
            Ok(_) => Err(ParseErrorKind::NotADigit),
        }
    };
    (result, pos)
}

/// Byte strings made of digits, blanks, newlines and other bytes, in runs of every length
/// up to 24, at every alignment near the end of the text.
fn generated(seed: u64, n: usize) -> std::vec::Vec<std::vec::Vec<u8>> {
    let mut x = seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let len = (next() % 40) as usize;
            (0..len)
                .map(|_| match next() % 16 {
                    0 => b' ',
                    1 => b'\t',
                    2 => b'\n',
                    3 => (next() % 256) as u8,
                    4 => b'/',
                    5 => b':',
                    _ => b'0' + (next() % 10) as u8,
                })
                .collect()
        })
        .collect()
}

#[test]
fn word_at_a_time_readings_agree_with_digit_by_digit_ones() {
    let mut texts = generated(0x9e37_79b9_7f4a_7c15, 20_000);
    for digits in 1..=24 {
        for tail in [&b""[..], b" ", b"\n", b"x", b" 12\n"] {
            let mut t: std::vec::Vec<u8> = (0..digits).map(|i| b"9876543210"[i % 10]).collect();
            t.extend_from_slice(tail);
            texts.push(t);
        }
    }
    texts.push(b"18446744073709551615 18446744073709551616".to_vec());
    for text in &texts {
        assert_eq!(parse_u64(text), reference_u64(text), "{text:?}");
        for pos in 0..text.len() {
            let mut c = Cursor::new(text);
            c.pos = pos;
            let got = c.number();
            let (want, want_pos) = reference_number(text, pos);
            assert_eq!(got, want, "{text:?} at {pos}");
            if want.is_ok() {
                assert_eq!(c.pos, want_pos, "{text:?} at {pos}");
            }
            let mut c = Cursor::new(text);
            c.pos = pos;
            let mut out = [0u64; 4];
            let mut want = Cursor::new(text);
            want.pos = pos;
            let mut want_out = [0u64; 4];
            let mut want_n = 0;
            let want_result = loop {
                if want_n == want_out.len() {
                    break Ok(want_n);
                }
                match want.number() {
                    Ok(Some(v)) => want_out[want_n] = v,
                    Ok(None) => break Ok(want_n),
                    Err(e) => break Err(e),
                }
                want_n += 1;
            };
            assert_eq!(c.numbers(&mut out), want_result, "{text:?} at {pos}");
            if want_result.is_ok() {
                assert_eq!((out, c.pos), (want_out, want.pos), "{text:?} at {pos}");
            }
            let mut c = Cursor::new(text);
            c.pos = pos;
            let mut start = pos;
            while start < text.len() && is_blank(text[start]) {
                start += 1;
            }
            let mut end = start;
            while end < text.len() && !is_blank(text[end]) && text[end] != b'\n' {
                end += 1;
            }
            assert_eq!(c.token(), &text[start..end], "{text:?} at {pos}");
            assert_eq!(c.pos, end);
        }
    }
}
