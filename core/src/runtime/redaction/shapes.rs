//! Secret values recognised by their shape (credentials in command strings, well-known token
//! formats, PEM private keys), in one linear left-to-right pass.

use super::keys::is_secret_key;

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn is_cred(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'=')
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// Where a value ends: whitespace, a quote, a backslash (an escape in JSON text) or a shell
/// separator.
fn ends_value(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'\\' | b'`' | b';' | b'&' | b'|' | b',')
}

fn run(bytes: &[u8], from: usize, class: fn(u8) -> bool) -> usize {
    let mut i = from;
    while i < bytes.len() && class(bytes[i]) {
        i += 1;
    }
    i
}

fn starts_ci(bytes: &[u8], at: usize, word: &[u8]) -> bool {
    bytes.len() >= at + word.len() && bytes[at..at + word.len()].eq_ignore_ascii_case(word)
}

fn skip_blanks(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
        i += 1;
    }
    i
}

/// Memoised scans: the end of a run (the first byte at or after `from` outside a class, or the
/// first occurrence of a pattern) is the same from every start up to that end, so no byte is
/// scanned twice for the same rule and the whole pass stays linear.
#[derive(Default)]
struct Memo {
    from: usize,
    end: usize,
    set: bool,
}

impl Memo {
    fn run(&mut self, bytes: &[u8], from: usize, class: fn(u8) -> bool) -> usize {
        if self.set && self.from <= from && from <= self.end {
            return self.end;
        }
        let end = run(bytes, from, class);
        *self = Memo {
            from,
            end,
            set: true,
        };
        end
    }

    /// The first position at or after `from` where `ends(bytes, p)` holds (`bytes.len()` when
    /// none), for a rule that looks at `bytes[p]` and `bytes[p - 1]` only: the answer is again
    /// the same from every start up to it.
    fn scan(&mut self, bytes: &[u8], from: usize, ends: fn(&[u8], usize) -> bool) -> usize {
        if self.set && self.from <= from && from <= self.end {
            return self.end;
        }
        let mut end = from;
        while end < bytes.len() && !ends(bytes, end) {
            end += 1;
        }
        *self = Memo {
            from,
            end,
            set: true,
        };
        end
    }

    /// The first occurrence of `pat` at or after `from` (`bytes.len()` when none).
    fn find(&mut self, bytes: &[u8], from: usize, pat: &[u8]) -> usize {
        if self.set && self.from <= from && from <= self.end {
            return self.end;
        }
        let end = crate::find::bytes(&bytes[from..], pat).map_or(bytes.len(), |at| from + at);
        *self = Memo {
            from,
            end,
            set: true,
        };
        end
    }
}

#[derive(Default)]
struct Memos {
    alnum: Memo,
    alnum_underscore: Memo,
    alnum_dash: Memo,
    b64url: [Memo; 3],
    cred: Memo,
    value: Memo,
    line: Memo,
    /// Quoted values: one per opening quote (`'`, `"`, the JSON-escaped `\"`, bash's `$'`).
    quoted: [Memo; 4],
    /// Bare pieces of a shell word (`word_piece_end`).
    word_piece: Memo,
    /// Whole shell words ([`word_end`]), and how long the closing quote of the last was.
    word: Memo,
    word_close: usize,
    /// The shorter reading of the word just scanned, where a command's two differ (end,
    /// closing quote's length); `None` after a memoised answer.
    word_other: Option<(usize, usize)>,
    /// Values of `NAME: value` / `NAME = value` to the end of the line.
    line_value: Memo,
    userinfo: Memo,
    pem_end: Memo,
    /// A shell parameter's default, to its closing brace ([`parameter_default`]).
    parameter: Memo,
    /// The text is a command (a shell reads it): quoted values run over newlines.
    command: bool,
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn is_line(b: u8) -> bool {
    !matches!(b, b'\n' | b'\r' | b'"' | b'\'' | b'\\')
}

/// A byte of a URL's authority (userinfo, `@`, host, port).
fn is_userinfo(b: u8) -> bool {
    !ends_value(b) && !matches!(b, b'/' | b'?' | b'#')
}

/// Where a quoted value that opens at `open` (its opening quote: `'`, `"`, or `\"` as JSON text
/// escapes one, as `skip_quote` found it) and starts at `s` ends: at its closing quote of the
/// same kind, or the end of the line. Inside double quotes a quote after a backslash is part
/// of the value (a quote after an escaped backslash counts as escaped too: the value may run
/// longer, never shorter); in JSON text the closing quote is `\"`.
fn quoted_end(bytes: &[u8], open: usize, s: usize, m: &mut Memos) -> usize {
    fn single(b: &[u8], p: usize) -> bool {
        matches!(b[p], b'\'' | b'\n' | b'\r')
    }
    fn double(b: &[u8], p: usize) -> bool {
        // A newline after a backslash continues the value on the next line.
        matches!(b[p], b'\n' | b'\r' | b'"') && b[p - 1] != b'\\'
    }
    // In a command, quotes are the shell's: a value runs on over newlines to its close.
    fn single_command(b: &[u8], p: usize) -> bool {
        b[p] == b'\''
    }
    fn double_command(b: &[u8], p: usize) -> bool {
        b[p] == b'"' && b[p - 1] != b'\\'
    }
    fn json(b: &[u8], p: usize) -> bool {
        matches!(b[p], b'\n' | b'\r')
            || (b[p] == b'"' && b[p - 1] == b'\\' && (p < 2 || b[p - 2] != b'\\'))
    }
    fn ansi_c(b: &[u8], p: usize) -> bool {
        matches!(b[p], b'\n' | b'\r') || (b[p] == b'\'' && b[p - 1] != b'\\')
    }
    let command = m.command;
    let memos = &mut m.quoted;
    match bytes[open] {
        b'\'' if command => memos[0].scan(bytes, s, single_command),
        b'\'' => memos[0].scan(bytes, s, single),
        b'"' if command => memos[1].scan(bytes, s, double_command),
        b'"' => memos[1].scan(bytes, s, double),
        b'$' => memos[3].scan(bytes, s, ansi_c),
        _ => {
            let e = memos[2].scan(bytes, s, json);
            // Up to the backslash of the closing `\"`.
            if e < bytes.len() && bytes[e] == b'"' {
                e - 1
            } else {
                e
            }
        }
    }
}

/// Where a bare piece of a shell word ends ([`ends_value`]), except that a backslash escapes
/// the byte after it (a space or tab, a quote, a newline: `\<newline>` continues the word on
/// the next line) and is never an end itself; `$'` starts a piece of its own. A byte after
/// any backslash counts as escaped (after an escaped backslash too): the value may run longer,
/// never shorter.
fn word_piece_end(b: &[u8], p: usize) -> bool {
    let escaped = p > 0 && b[p - 1] == b'\\';
    match b[p] {
        b'\\' => false,
        _ if escaped => false,
        b'$' => b.get(p + 1) == Some(&b'\''),
        // A comma is part of a shell word (`PASSWORD=a,b` sets `a,b`).
        b',' => false,
        c => ends_value(c),
    }
}

/// Where a bare piece of a shell word that starts at `p` ends as the shell reads it: a backslash
/// escapes exactly the byte after it; a quote or `$'` starts the next piece.
fn bare_piece_end(b: &[u8], mut p: usize) -> usize {
    while p < b.len() {
        match b[p] {
            b'\\' => p += 2,
            b'$' if b.get(p + 1) == Some(&b'\'') => break,
            b',' => p += 1,
            c if ends_value(c) => break,
            _ => p += 1,
        }
    }
    p.min(b.len())
}

/// Where a `NAME: value` or `NAME = value` that is not quoted ends: at the end of the line, a
/// double quote, or a backslash that escapes no blank (`\"` closing a JSON string); an escaped blank
/// (`a\ b`) is part of it.
fn line_value_end(b: &[u8], p: usize) -> bool {
    match b[p] {
        // An apostrophe is text here (`password: don't-tell`); a double quote closes a
        // JSON string the line sits in.
        b'\n' | b'\r' | b'"' => true,
        b'\\' => !matches!(b.get(p + 1), Some(b' ' | b'\t')),
        _ => false,
    }
}

/// The length of the quote that closes a quoted piece opened at `open` whose value ends at `e`
/// ([`quoted_end`]): 1 (`'`, `"`, the `'` of `$'`), 2 (`\"` in JSON text), 0 when it ran to
/// the end of the line or the text unclosed.
fn closing_len(bytes: &[u8], open: usize, e: usize) -> usize {
    let at = |i: usize, c: u8| bytes.get(i) == Some(&c);
    match bytes[open] {
        b'\'' | b'$' if at(e, b'\'') => 1,
        b'"' if at(e, b'"') => 1,
        b'\\' if at(e, b'\\') && at(e + 1, b'"') => 2,
        _ => 0,
    }
}

/// Where the shell word that starts at `s0` (a `NAME=value`'s value) ends, and the length of
/// the quote that closes its last piece there (0 when that piece is bare). A word is its
/// pieces joined with no blank between: bare runs (backslash escapes included) and single-,
/// double-, `$'`- or JSON-quoted strings (`x'y z'w`, `"a b"c`, `'abc'\''def'`), as the shell
/// joins them into one value. A word is memoised whole: a start within the last one (a
/// `NAME=` inside its value) ends where it does, so the pass stays linear.
fn word_end(bytes: &[u8], s0: usize, m: &mut Memos) -> (usize, usize) {
    if m.word.set && m.word.from <= s0 && s0 <= m.word.end {
        m.word_other = None;
        return (m.word.end, m.word_close);
    }
    let mut found = word_scan(bytes, s0, m, false);
    m.word_other = None;
    // In a command, also as the shell reads it, and whichever runs longer: after an escaped
    // backslash a quote opens a piece (`abc\\'def ghi'` is `abc\def ghi`), where the rule
    // for any text, JSON's included, takes it as escaped. The other reading is kept too
    // (`a\\;` is `a\` to the shell, `a\\;` to that rule): its value is what is printed.
    if m.command {
        let mut shell = word_scan(bytes, s0, m, true);
        if shell.0 > found.0 {
            std::mem::swap(&mut shell, &mut found);
        }
        m.word_other = (shell.0 != found.0).then_some(shell);
    }
    m.word = Memo {
        from: s0,
        end: found.0,
        set: true,
    };
    m.word_close = found.1;
    found
}

/// One reading of the word that starts at `s0` ([`word_end`]): bare pieces as any text
/// escapes them, or (`exact`) as a shell does.
fn word_scan(bytes: &[u8], s0: usize, m: &mut Memos, exact: bool) -> (usize, usize) {
    let n = bytes.len();
    let (mut p, mut close) = (s0, 0);
    while p < n {
        let q = skip_quote(bytes, p);
        if q > p {
            let e = quoted_end(bytes, p, q, m);
            close = closing_len(bytes, p, e);
            p = e + close;
            if close == 0 {
                break;
            }
        } else {
            let e = if exact {
                bare_piece_end(bytes, p)
            } else {
                m.word_piece.scan(bytes, p, word_piece_end)
            };
            if e == p {
                break;
            }
            (p, close) = (e, 0);
        }
    }
    (p, close)
}

/// A shell's parameter with a default (`${NAME:-v}`, `:=`, `:?`, `:+`, or without the colon)
/// where NAME (`bytes[i..end]`) is a secret key: `v`, to the closing brace on its line, is a
/// value.
fn parameter_default(
    bytes: &[u8],
    i: usize,
    end: usize,
    m: &mut Memos,
    spans: &mut Vec<(usize, usize)>,
) {
    let mut k = end;
    if bytes.get(k) == Some(&b':') {
        k += 1;
    }
    if !matches!(bytes.get(k), Some(b'-' | b'=' | b'?' | b'+'))
        || !std::str::from_utf8(&bytes[i..end]).is_ok_and(is_secret_key)
    {
        return;
    }
    let s = k + 1;
    let e = m.parameter.run(bytes, s, |c| c != b'}' && c != b'\n');
    if e > s && bytes.get(e) == Some(&b'}') {
        spans.push((s, e));
    }
}

/// Past an optional opening quote (raw, or escaped as in JSON text).
fn skip_quote(bytes: &[u8], i: usize) -> usize {
    if i < bytes.len() && matches!(bytes[i], b'"' | b'\'') {
        i + 1
    } else if i + 1 < bytes.len() && bytes[i] == b'$' && bytes[i + 1] == b'\'' {
        // bash's ANSI-C quoting, `$'...'`, whose backslash escapes (`\'` too) are its own.
        i + 2
    } else if i + 1 < bytes.len() && bytes[i] == b'\\' && bytes[i + 1] == b'"' {
        i + 2
    } else {
        i
    }
}

const PEM_BEGIN: &[u8] = b"-----BEGIN ";
const PEM_END: &[u8] = b"-----END ";
const PEM_LABEL_MAX: usize = 64;

/// The end of a PEM armour label that names a private key (`… PRIVATE KEY-----`, or
/// `PGP PRIVATE KEY BLOCK-----`), just past its closing dashes.
fn private_label_end(bytes: &[u8], from: usize) -> Option<usize> {
    let window = &bytes[from..bytes.len().min(from + PEM_LABEL_MAX)];
    let close = crate::find::bytes(window, b"-----")?;
    let label = &window[..close];
    crate::find::bytes(label, b"PRIVATE KEY").map(|_| from + close + 5)
}

/// Words after which the rest of the line is a credential (`Authorization: Bearer …`).
fn is_scheme(word: &[u8]) -> bool {
    [&b"bearer"[..], b"basic", b"token", b"digest", b"bot"]
        .iter()
        .any(|w| word.eq_ignore_ascii_case(w))
}

/// Spans of secret shapes in `bytes`, in one left-to-right pass. Every start is examined (a
/// match never skips what follows it, so a shape inside another's value is still found); the
/// scans behind each rule are memoised.
// Longer than 70 lines on purpose: one pass over the bytes with one arm per secret shape; the
// arms share the position and the memoised scans, and split apart they would rescan.
pub(super) fn shapes(bytes: &[u8], spans: &mut Vec<(usize, usize)>) {
    shapes_with(bytes, spans, false);
}

/// [`shapes`] in a command, which a shell reads: a quoted value runs over newlines to its
/// closing quote (in other text, such as output, a quote ends at the line's end, so an
/// apostrophe takes no more than its line).
pub(super) fn shapes_in_command(bytes: &[u8], spans: &mut Vec<(usize, usize)>) {
    shapes_with(bytes, spans, true);
}

fn shapes_with(bytes: &[u8], spans: &mut Vec<(usize, usize)>, command: bool) {
    let n = bytes.len();
    let mut m = Memos {
        command,
        ..Memos::default()
    };
    // The last `NAME=value` span pushed, and the end of the last one pushed within it.
    let mut last_name = (usize::MAX, 0);
    let mut last_inner = 0;
    for i in 0..n {
        let b = bytes[i];
        match b {
            b'g' if i + 4 <= n
                && matches!(
                    &bytes[i..i + 4],
                    b"ghp_" | b"gho_" | b"ghu_" | b"ghs_" | b"ghr_"
                ) =>
            {
                let end = m.alnum.run(bytes, i + 4, is_alnum);
                if end - (i + 4) >= 20 {
                    spans.push((i, end));
                }
            }
            b'g' if bytes[i..].starts_with(b"github_pat_") => {
                let end = m
                    .alnum_underscore
                    .run(bytes, i + 11, |c| c.is_ascii_alphanumeric() || c == b'_');
                if end - (i + 11) >= 20 {
                    spans.push((i, end));
                }
            }
            b'A' if i + 20 <= n
                && (bytes[i..].starts_with(b"AKIA") || bytes[i..].starts_with(b"ASIA"))
                && bytes[i + 4..i + 20]
                    .iter()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) =>
            {
                spans.push((i, m.alnum.run(bytes, i + 20, is_alnum)));
            }
            b'x' if i + 5 <= n
                && bytes[i..].starts_with(b"xox")
                && matches!(bytes[i + 3], b'a' | b'b' | b'p' | b'r' | b's')
                && bytes[i + 4] == b'-' =>
            {
                let end = m
                    .alnum_dash
                    .run(bytes, i + 5, |c| c.is_ascii_alphanumeric() || c == b'-');
                if end - (i + 5) >= 10 {
                    spans.push((i, end));
                }
            }
            b'e' if bytes[i..].starts_with(b"eyJ") => {
                let p1 = m.b64url[0].run(bytes, i, is_b64url);
                if bytes.get(p1) == Some(&b'.') {
                    let p2 = m.b64url[1].run(bytes, p1 + 1, is_b64url);
                    if p2 > p1 + 1 && bytes.get(p2) == Some(&b'.') {
                        spans.push((i, m.b64url[2].run(bytes, p2 + 1, is_b64url)));
                    }
                }
            }
            b'-' if bytes[i..].starts_with(PEM_BEGIN) => {
                if let Some(label_end) = private_label_end(bytes, i + PEM_BEGIN.len()) {
                    let at = m.pem_end.find(bytes, label_end, PEM_END);
                    let end = if at < n {
                        let from = at + PEM_END.len();
                        let w = &bytes[from..n.min(from + PEM_LABEL_MAX)];
                        crate::find::bytes(w, b"-----").map_or(n, |c| from + c + 5)
                    } else {
                        n
                    };
                    spans.push((i, end));
                }
            }
            b'-' if bytes[i..].starts_with(PEM_END) => {
                // The end of a block whose start is not here (cut off): all before it goes.
                if let Some(end) = private_label_end(bytes, i + PEM_END.len()) {
                    spans.push((0, end));
                }
            }
            b'-' if bytes[i..].starts_with(b"--user")
                || bytes[i..].starts_with(b"--proxy-user")
                || ((bytes[i..].starts_with(b"-u") || bytes[i..].starts_with(b"-U"))
                    && (i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'\n' | b'"' | b'\''))) =>
            {
                // `-u user:pass`, `-uuser:pass`, `--user=user:pass`, and curl's proxy
                // credentials `-U`/`--proxy-user`, quoted or not.
                let mut s = if bytes[i..].starts_with(b"--proxy-user") {
                    i + 12
                } else if bytes[i + 1] == b'-' {
                    i + 6
                } else {
                    i + 2
                };
                if bytes.get(s) == Some(&b'=') {
                    s += 1;
                }
                let s0 = skip_blanks(bytes, s);
                let s = skip_quote(bytes, s0);
                let e = if s > s0 {
                    quoted_end(bytes, s0, s, &mut m)
                } else {
                    m.value.run(bytes, s, |c| !ends_value(c))
                };
                if let Some(colon) = crate::find::byte(b':', &bytes[s..e]) {
                    if s + colon + 1 < e {
                        spans.push((s + colon + 1, e));
                    }
                }
            }
            b':' if bytes[i..].starts_with(b"://") => {
                // The userinfo ends at the authority's last `@` (a password may hold `@`s);
                // the authority at the first `/`, `?`, `#` or separator, so no two overlap.
                let from = i + 3;
                let end = m.userinfo.run(bytes, from, is_userinfo);
                if let Some(j) = bytes[from..end].iter().rposition(|&b| b == b'@') {
                    let j = from + j;
                    if let Some(colon) = crate::find::byte(b':', &bytes[from..j]) {
                        if from + colon + 1 < j {
                            spans.push((from + colon + 1, j));
                        }
                    }
                }
            }
            b'b' | b'B' if starts_ci(bytes, i, b"bearer") || starts_ci(bytes, i, b"basic") => {
                let word = if starts_ci(bytes, i, b"bearer") { 6 } else { 5 };
                let s = skip_blanks(bytes, i + word);
                if s > i + word {
                    let e = m.cred.run(bytes, s, is_cred);
                    if e > s {
                        spans.push((s, e));
                    }
                }
            }
            _ => {}
        }
        // `NAME=value`, `NAME: value`, `"NAME": "value"` where NAME is a secret key; after a
        // name ending in `authorization`, or a scheme word, the rest of the line.
        if is_ident(b) && (i == 0 || !is_ident(bytes[i - 1])) {
            let end = run(bytes, i, is_ident);
            if m.command && i >= 2 && &bytes[i - 2..i] == b"${" {
                // A shell name has no `-` or `.`, which the run above takes in.
                let name_end = run(bytes, i, |c| c.is_ascii_alphanumeric() || c == b'_');
                parameter_default(bytes, i, name_end, &mut m, spans);
            }
            // A quoted name may close a subscript: `os.environ["API_KEY"] = "v"`.
            let q = skip_quote(bytes, end);
            let q = if q > end && bytes.get(q) == Some(&b']') {
                q + 1
            } else {
                q
            };
            let mut j = skip_blanks(bytes, q);
            if bytes.get(j) == Some(&b'\\') && bytes.get(j + 1) == Some(&b'"') {
                j += 2;
            }
            // In a command, a long option named as a secret takes the next word as its value
            // (`--password v`, `--token "v"`), as it would as the next argument of an argv.
            if m.command
                && q == end
                && j > end
                && end - i > 2
                && bytes[i..].starts_with(b"--")
                && j < n
                && !matches!(bytes[j], b'=' | b':' | b'-' | b'\n' | b';' | b'|' | b'&')
                && std::str::from_utf8(&bytes[i..end]).is_ok_and(is_secret_key)
            {
                let s = skip_quote(bytes, j);
                let e = if s > j {
                    quoted_end(bytes, j, s, &mut m)
                } else {
                    m.value.run(bytes, s, |c| !ends_value(c))
                };
                if e > s {
                    spans.push((s, e));
                }
            }
            if j < n
                && matches!(bytes[j], b'=' | b':')
                && std::str::from_utf8(&bytes[i..end]).is_ok_and(is_secret_key)
            {
                let s0 = skip_blanks(bytes, j + 1);
                let s = skip_quote(bytes, s0);
                // A quoted value runs to its closing quote (spaces and all). A bare one runs to
                // the first separator after `NAME=value` (a shell's assignment), but to the end
                // of the line after `NAME: value` or `NAME = value` (a header, a config file),
                // where the value may hold spaces.
                // Either way a value that opens with a quote, or is a shell word, runs on
                // through the pieces joined to it (`'abc'\''def'`, `x'y z'w`).
                let spaced = bytes[j] == b':' || j > end || s0 > j + 1;
                let e = if spaced && s == s0 {
                    // In a command, the line's first word is a value too: a program may print
                    // that alone (`printf 'client_secret: v' | awk '{print $2}'`).
                    if m.command {
                        let word = m.value.run(bytes, s, |c| !ends_value(c));
                        if word > s {
                            spans.push((s, word));
                        }
                    }
                    m.line_value.scan(bytes, s, line_value_end)
                } else {
                    let (e, close) = word_end(bytes, s0, &mut m);
                    if let Some((other, other_close)) = m.word_other.take() {
                        let other = other - other_close;
                        if other > s {
                            spans.push((s, other));
                        }
                    }
                    // (A start within a memoised word may lie past its closing quote.) A value
                    // that opens with a quote also runs to that quote's close, whatever the
                    // word around it says: `A="x B="long secret"` keeps all of B's.
                    let quoted = if s > s0 {
                        quoted_end(bytes, s0, s, &mut m)
                    } else {
                        s
                    };
                    // In a command, the quoted piece alone is a value too, where the word goes
                    // on past it (`"v",` in JSON, `'v'}` in Python): it is what is printed.
                    if m.command && quoted > s && quoted < e - close {
                        spans.push((s, quoted));
                    }
                    (e - close).max(s).max(quoted)
                };
                let name = &bytes[i..end];
                let ends_with = |w: &[u8]| {
                    name.len() >= w.len() && name[name.len() - w.len()..].eq_ignore_ascii_case(w)
                };
                // A cookie header holds several `name=value;` pairs: all of it goes.
                let authorization = ends_with(b"authorization") || ends_with(b"cookie");
                let e = if authorization || is_scheme(&bytes[s..e]) {
                    m.line.run(bytes, s, is_line)
                } else {
                    e
                };
                // A value within the last one found (a `NAME=` inside it, which ends where it
                // does) adds nothing: kept out, the spans, and the values the arguments' spans
                // become, stay linear in the text.
                if e > s && !(last_name.0 <= s && e <= last_name.1) {
                    spans.push((s, e));
                    last_name = (s, e);
                } else if e > s && s >= last_inner {
                    // Within that value, this one still names a secret of its own that may
                    // appear alone elsewhere (`X="PASSWORD=v"; mysql -p v`): its bare value, to
                    // its first separator, is kept too. Such spans never overlap, so they stay
                    // linear as well.
                    let b = m.value.run(bytes, s, |c| !ends_value(c)).min(last_name.1);
                    if b > s {
                        spans.push((s, b));
                        last_inner = b;
                    }
                }
            }
        }
    }
}
