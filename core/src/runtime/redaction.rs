//! Redaction: secrets never reach the log, in any form it stores and in no partial form.
//!
//! Two kinds of secret are recognised:
//! - values held under secret-looking keys ([`is_secret_key`]: …KEY, …TOKEN, …SECRET, …PASS…,
//!   …PWD, PAT, AUTH…, COOKIE, CREDENTIAL…, case-insensitive, words split at `-`, `_`, `.`,
//!   spaces and camelCase). Such a value is replaced in the arguments, and its raw bytes and
//!   its JSON-escaped form are scrubbed from everything else the job logs (the command line,
//!   argv, stdin, output, error messages);
//! - values of well-known shapes wherever they appear: `Authorization:` headers, `Bearer` and
//!   `Basic` credentials, `curl -u user:pass` / `--user`, `scheme://user:pass@host`, GitHub
//!   tokens (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`), AWS access key ids
//!   (`AKIA`/`ASIA` + 16), Slack tokens (`xox[abprs]-`), JWTs (three base64url parts starting
//!   `eyJ`), PEM private key blocks, and `NAME=value` / `NAME: value` where NAME is a secret key.
//!
//! Scrubbing works on raw values before anything is JSON-encoded, so an escaped quote,
//! backslash or tab never hides a value. Where a capture was cut (the output cap keeps a head
//! and a tail), the partial line on each side of the cut and any partial secret value there
//! are replaced too: the log never holds the head or tail of a secret.
//!
//! The scanner is hand-written: one pass over the bytes plus one substring search per known
//! value, linear in the input, and it allocates only the output.
use serde_json::{json, Map, Value};

use super::RECORD_OUTPUT_BYTES_MAX;
use crate::exec::output::CapturedOutput;

/// What stands in the log where a secret was.
pub const REDACTED: &str = "[REDACTED]";
/// Secret values shorter than this are replaced under their key but not searched for
/// elsewhere (too many false hits).
const SECRET_VALUE_BYTES_MIN: usize = 4;

/// Whether `key` names a secret: any of its words (split at `-`, `_`, `.`, space and a
/// lower-to-upper case change) ends with `key`, contains `token`, `secret`, `pass`, `cookie`,
/// `credential` or `private`, ends with `pwd`, is `pat`, or starts with `auth` (but `author`
/// is not `authorization`). `PWD` and `OLDPWD` alone are the shell's directories, not secrets.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.as_bytes();
    if k.eq_ignore_ascii_case(b"pwd") || k.eq_ignore_ascii_case(b"oldpwd") {
        return false;
    }
    let mut start = 0;
    for i in 0..=k.len() {
        let boundary = i == k.len()
            || matches!(k[i], b'-' | b'_' | b'.' | b' ')
            || (i > start && k[i].is_ascii_uppercase() && k[i - 1].is_ascii_lowercase());
        if !boundary {
            continue;
        }
        if i > start && is_secret_word(&k[start..i]) {
            return true;
        }
        start = if i < k.len() && k[i].is_ascii_uppercase() {
            i
        } else {
            i + 1
        };
    }
    false
}

fn is_secret_word(w: &[u8]) -> bool {
    let has = |part: &[u8]| {
        w.len() >= part.len()
            && w.windows(part.len())
                .any(|win| win.eq_ignore_ascii_case(part))
    };
    let ends =
        |part: &[u8]| w.len() >= part.len() && w[w.len() - part.len()..].eq_ignore_ascii_case(part);
    let starts = |part: &[u8]| w.len() >= part.len() && w[..part.len()].eq_ignore_ascii_case(part);
    ends(b"key")
        || ends(b"keys")
        || ends(b"pwd")
        || w.eq_ignore_ascii_case(b"pat")
        || has(b"token")
        || has(b"secret")
        || has(b"pass")
        || has(b"cookie")
        || has(b"credential")
        || has(b"private")
        || (starts(b"auth") && (!starts(b"author") || starts(b"authoriz")))
}

/// The secrets of one job and how to keep them out of what it logs.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    /// Known secret values, raw and JSON-escaped, longest first (so a longer value is
    /// replaced whole before a shorter one inside it).
    needles: Vec<Vec<u8>>,
}

impl Redactor {
    /// Collects the values held under secret-looking keys of `args`, at any depth.
    pub fn from_args(args: &Value) -> Redactor {
        fn collect_all(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::String(s) => out.push(s.clone()),
                Value::Array(a) => a.iter().for_each(|x| collect_all(x, out)),
                Value::Object(o) => o.values().for_each(|x| collect_all(x, out)),
                _ => {}
            }
        }
        fn walk(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(o) => {
                    for (k, x) in o {
                        if is_secret_key(k) {
                            collect_all(x, out);
                        } else {
                            walk(x, out);
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                _ => {}
            }
        }
        let mut values = Vec::new();
        walk(args, &mut values);
        Redactor::from_values(values)
    }

    /// A redactor for the given secret values.
    pub fn from_values(values: impl IntoIterator<Item = String>) -> Redactor {
        let mut needles: Vec<Vec<u8>> = Vec::new();
        for v in values {
            if v.len() < SECRET_VALUE_BYTES_MIN {
                continue;
            }
            let escaped = Value::String(v.clone()).to_string();
            let escaped = &escaped[1..escaped.len() - 1];
            if escaped != v {
                needles.push(escaped.as_bytes().to_vec());
            }
            needles.push(v.into_bytes());
        }
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Redactor { needles }
    }

    /// The secret values (raw form) this redactor scrubs.
    pub fn secret_count(&self) -> usize {
        self.needles.len()
    }

    /// `args` as logged: values under secret keys replaced, every other string (and key)
    /// scrubbed of known values and secret shapes.
    pub fn args(&self, args: &Value) -> Value {
        match args {
            Value::Object(map) => {
                let mut out = Map::with_capacity(map.len());
                for (k, v) in map {
                    let value = if is_secret_key(k) {
                        Value::String(REDACTED.into())
                    } else {
                        self.args(v)
                    };
                    out.insert(self.text(k), value);
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(|v| self.args(v)).collect()),
            Value::String(s) => Value::String(self.text(s)),
            other => other.clone(),
        }
    }

    /// `s` with every known value and secret shape replaced.
    pub fn text(&self, s: &str) -> String {
        let out = self.scrub(s.as_bytes(), false, false);
        String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }

    /// A captured stream as logged: scrubbed (each side of a cut treated as partial), then
    /// bounded to [`RECORD_OUTPUT_BYTES_MAX`]; the flag says the bound cut it.
    pub fn output(&self, captured: &CapturedOutput) -> (Vec<u8>, bool) {
        let bytes = &captured.bytes;
        let mut out = match captured.cut {
            Some(cut) if cut.head_end <= cut.tail_start && cut.tail_start <= bytes.len() => {
                let mut out = self.scrub(&bytes[..cut.head_end], false, true);
                out.extend_from_slice(&bytes[cut.head_end..cut.tail_start]);
                if cut.tail_start < bytes.len() {
                    out.extend_from_slice(&self.scrub(&bytes[cut.tail_start..], true, false));
                }
                out
            }
            _ => self.scrub(bytes, false, false),
        };
        // Scrubbed first, bounded second: every secret was replaced whole before this cut.
        let cut = out.len() > RECORD_OUTPUT_BYTES_MAX;
        out.truncate(RECORD_OUTPUT_BYTES_MAX);
        (out, cut)
    }

    /// `bytes` with every known value and secret shape replaced by [`REDACTED`]. An open start
    /// (or end) means the bytes were cut there: the partial line and any partial known value at
    /// that side are replaced as well.
    pub fn scrub(&self, bytes: &[u8], open_start: bool, open_end: bool) -> Vec<u8> {
        let mut spans = Vec::new();
        for needle in &self.needles {
            for at in memchr::memmem::find_iter(bytes, needle) {
                spans.push((at, at + needle.len()));
            }
        }
        shapes(bytes, &mut spans);
        if open_end && !bytes.is_empty() {
            let line = memchr::memrchr(b'\n', bytes).map_or(0, |i| i + 1);
            let partial = self
                .needles
                .iter()
                .map(|n| bytes.len() - suffix_prefix_overlap(bytes, n))
                .min()
                .unwrap_or(bytes.len());
            let from = line.min(partial);
            if from < bytes.len() {
                spans.push((from, bytes.len()));
            }
        }
        if open_start && !bytes.is_empty() {
            let line = memchr::memchr(b'\n', bytes).unwrap_or(bytes.len());
            let partial = self
                .needles
                .iter()
                .map(|n| prefix_suffix_overlap(bytes, n))
                .max()
                .unwrap_or(0);
            let to = line.max(partial);
            if to > 0 {
                spans.push((0, to));
            }
        }
        replace_spans(bytes, spans)
    }
}

/// Replaces the (possibly overlapping) spans by one marker each merged run.
fn replace_spans(bytes: &[u8], mut spans: Vec<(usize, usize)>) -> Vec<u8> {
    if spans.is_empty() {
        return bytes.to_vec();
    }
    spans.sort_unstable();
    let mut out = Vec::with_capacity(bytes.len());
    let mut pos = 0;
    let mut i = 0;
    while i < spans.len() {
        let (start, mut end) = spans[i];
        while i + 1 < spans.len() && spans[i + 1].0 <= end {
            i += 1;
            end = end.max(spans[i].1);
        }
        if start >= pos {
            out.extend_from_slice(&bytes[pos..start]);
            out.extend_from_slice(REDACTED.as_bytes());
        }
        pos = pos.max(end);
        i += 1;
    }
    out.extend_from_slice(&bytes[pos.min(bytes.len())..]);
    out
}

/// KMP failure function of `p`.
fn failure(p: &[u8]) -> Vec<usize> {
    let mut f = vec![0usize; p.len()];
    let mut k = 0;
    for i in 1..p.len() {
        while k > 0 && p[i] != p[k] {
            k = f[k - 1];
        }
        if p[i] == p[k] {
            k += 1;
        }
        f[i] = k;
    }
    f
}

/// Length of the longest proper prefix of `needle` that `text` ends with (linear time).
fn suffix_prefix_overlap(text: &[u8], needle: &[u8]) -> usize {
    if needle.len() < 2 {
        return 0;
    }
    let f = failure(needle);
    let from = text.len().saturating_sub(needle.len() - 1);
    let mut k = 0;
    for &b in &text[from..] {
        while k > 0 && b != needle[k] {
            k = f[k - 1];
        }
        if b == needle[k] {
            k += 1;
        }
        if k == needle.len() {
            k = f[k - 1];
        }
    }
    k
}

/// Length of the longest proper suffix of `needle` that `text` starts with (linear time).
fn prefix_suffix_overlap(text: &[u8], needle: &[u8]) -> usize {
    let t: Vec<u8> = text[..text.len().min(needle.len().saturating_sub(1))]
        .iter()
        .rev()
        .copied()
        .collect();
    let n: Vec<u8> = needle.iter().rev().copied().collect();
    suffix_prefix_overlap(&t, &n)
}

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

    /// The first occurrence of `pat` at or after `from` (`bytes.len()` when none).
    fn find(&mut self, bytes: &[u8], from: usize, pat: &[u8]) -> usize {
        if self.set && self.from <= from && from <= self.end {
            return self.end;
        }
        let end = memchr::memmem::find(&bytes[from..], pat).map_or(bytes.len(), |at| from + at);
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
    userinfo: Memo,
    pem_end: Memo,
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn is_line(b: u8) -> bool {
    !matches!(b, b'\n' | b'\r' | b'"' | b'\'' | b'\\')
}

fn is_userinfo(b: u8) -> bool {
    !ends_value(b) && !matches!(b, b'@' | b'/' | b'?' | b'#')
}

/// Past an optional opening quote (raw, or escaped as in JSON text).
fn skip_quote(bytes: &[u8], i: usize) -> usize {
    if i < bytes.len() && matches!(bytes[i], b'"' | b'\'') {
        i + 1
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
    let close = memchr::memmem::find(window, b"-----")?;
    let label = &window[..close];
    memchr::memmem::find(label, b"PRIVATE KEY").map(|_| from + close + 5)
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
fn shapes(bytes: &[u8], spans: &mut Vec<(usize, usize)>) {
    let n = bytes.len();
    let mut m = Memos::default();
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
                        memchr::memmem::find(w, b"-----").map_or(n, |c| from + c + 5)
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
            b'-' if bytes[i..].starts_with(b"-u ") || bytes[i..].starts_with(b"--user") => {
                let mut s = if bytes[i + 1] == b'u' { i + 3 } else { i + 6 };
                if bytes.get(s) == Some(&b'=') {
                    s += 1;
                }
                let s = skip_quote(bytes, skip_blanks(bytes, s));
                let e = m.value.run(bytes, s, |c| !ends_value(c));
                if let Some(colon) = memchr::memchr(b':', &bytes[s..e]) {
                    if s + colon + 1 < e {
                        spans.push((s + colon + 1, e));
                    }
                }
            }
            b':' if bytes[i..].starts_with(b"://") => {
                let from = i + 3;
                let j = m.userinfo.run(bytes, from, is_userinfo);
                if j < n && bytes[j] == b'@' {
                    if let Some(colon) = memchr::memchr(b':', &bytes[from..j]) {
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
            let mut j = skip_blanks(bytes, skip_quote(bytes, end));
            if bytes.get(j) == Some(&b'\\') && bytes.get(j + 1) == Some(&b'"') {
                j += 2;
            }
            if j < n
                && matches!(bytes[j], b'=' | b':')
                && std::str::from_utf8(&bytes[i..end]).is_ok_and(is_secret_key)
            {
                let s = skip_quote(bytes, skip_blanks(bytes, j + 1));
                let e = m.value.run(bytes, s, |c| !ends_value(c));
                let name = &bytes[i..end];
                let authorization = name.len() >= 13
                    && name[name.len() - 13..].eq_ignore_ascii_case(b"authorization");
                if authorization || is_scheme(&bytes[s..e]) {
                    let e = m.line.run(bytes, s, is_line);
                    if e > s {
                        spans.push((s, e));
                    }
                } else if e > s {
                    spans.push((s, e));
                }
            }
        }
    }
}

/// Replaces the values of secret-looking keys, at any depth, and collects the secret strings
/// so they can also be scrubbed from output.
pub fn redact_args(args: &Value, secrets: &mut Vec<String>) -> Value {
    fn collect(v: &Value, secrets: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    if is_secret_key(k) {
                        collect_all(x, secrets);
                    } else {
                        collect(x, secrets);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| collect(x, secrets)),
            _ => {}
        }
    }
    fn collect_all(v: &Value, secrets: &mut Vec<String>) {
        match v {
            Value::String(s) if s.len() >= SECRET_VALUE_BYTES_MIN => secrets.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| collect_all(x, secrets)),
            Value::Object(o) => o.values().for_each(|x| collect_all(x, secrets)),
            _ => {}
        }
    }
    collect(args, secrets);
    Redactor::from_values(secrets.iter().cloned()).args(args)
}

/// Logged arguments longer than this are replaced by a placeholder holding their head.
const RECORD_ARGS_BYTES_MAX: usize = 64 * 1024;
/// Bytes of over-long arguments kept in the placeholder.
const RECORD_ARGS_HEAD_BYTES: usize = 4 * 1024;

/// Arguments as logged: the (redacted) JSON text when it fits, else a valid JSON placeholder
/// that says so and keeps the head, so the record is always JSON and always fits.
pub(super) fn bounded_args_json(args_json: String) -> String {
    if args_json.len() <= RECORD_ARGS_BYTES_MAX {
        return args_json;
    }
    let mut head = RECORD_ARGS_HEAD_BYTES;
    while !args_json.is_char_boundary(head) {
        head -= 1;
    }
    json!({
        "args_truncated": true,
        "bytes": args_json.len(),
        "head": &args_json[..head],
    })
    .to_string()
}

#[cfg(test)]
mod tests;
