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
//!   `eyJ`), PEM private key blocks, and `NAME=value` / `NAME: value` where NAME is a secret key
//!   (a `NAME=value`'s value is its whole shell word: quoted and bare pieces joined).
//!
//! Scrubbing works on raw values before anything is JSON-encoded, so an escaped quote,
//! backslash or tab never hides a value. Where a capture was cut (the output cap keeps a head
//! and a tail), the partial line on each side of the cut and any partial secret value there
//! are replaced too: the log never holds the head or tail of a secret.
//!
//! The shapes' scanner is hand-written, one pass over the bytes; the known values are found
//! together, in one more pass, by an Aho-Corasick automaton of all of them (the
//! `aho-corasick` crate): the work is linear in the input whatever the number of values.
use std::fmt;
use std::sync::Arc;

use aho_corasick::automaton::Automaton;
use aho_corasick::nfa::contiguous::NFA;
use aho_corasick::Anchored;
use serde_json::{json, Map, Value};

use super::RECORD_OUTPUT_BYTES_MAX;
use crate::exec::output::CapturedOutput;

mod keys;
mod shapes;

pub use keys::is_secret_key;
use shapes::shapes;

/// What stands in the log where a secret was.
pub const REDACTED: &str = "[REDACTED]";
/// Levels of quoting a command string is read through for secret values (a command for
/// `ssh`, which runs `sh -c '...'`, which sets `PASSWORD='...'`).
const NESTED_QUOTING_MAX: usize = 3;
/// The quoted forms of the values ([`quoted_forms`]) add at most as many bytes to the needles as
/// their raw, JSON-escaped and single-quoted forms have, and never more than this...
const QUOTED_FORMS_BYTES_MAX: usize = 1 << 20;
/// ... but always this many: a job's few values all get their quoted forms.
const QUOTED_FORMS_BYTES_MIN: usize = 64 << 10;
/// Secret values shorter than this are replaced under their key but not searched for
/// elsewhere (too many false hits).
const SECRET_VALUE_BYTES_MIN: usize = 4;

/// The secrets of one job and how to keep them out of what it logs.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    /// Known secret values, raw and JSON-escaped, longest first (so a longer value is
    /// replaced whole before a shorter one inside it).
    needles: Vec<Vec<u8>>,
    /// All of them in one automaton (none when there are none, or it could not be built:
    /// then each is searched for on its own).
    matcher: Option<Matcher>,
}

/// The needles' automaton, shared by the redactor's clones.
#[derive(Clone)]
struct Matcher(Arc<NFA>);

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Matcher({} values)", self.0.patterns_len())
    }
}

impl Matcher {
    fn new(needles: &[Vec<u8>]) -> Option<Matcher> {
        if needles.is_empty() {
            return None;
        }
        NFA::new(needles).ok().map(|nfa| Matcher(Arc::new(nfa)))
    }

    /// Adds a span for every place a needle occurs in `bytes`, overlapping ones included:
    /// at each byte, the longest needle that ends there (needles that end inside it lie
    /// inside it), adjacent and overlapping ones merged as they come. False when the
    /// automaton cannot search (the caller searches needle by needle).
    fn spans(&self, bytes: &[u8], spans: &mut Vec<(usize, usize)>) -> bool {
        let nfa = &*self.0;
        let Ok(mut sid) = nfa.start_state(Anchored::No) else {
            return false;
        };
        // The longest needle ending in a state that ends several: found on the state's first
        // visit and kept by state (the contiguous automaton's ids are offsets below its size),
        // so a text that visits such a state at every byte costs one pass over its needles,
        // not one per byte. A state that ends one needle needs no lookup.
        let mut longest: Vec<u32> = Vec::new();
        let mut run: Option<(usize, usize)> = None;
        for (i, &b) in bytes.iter().enumerate() {
            sid = nfa.next_state(Anchored::No, sid, b);
            if !nfa.is_special(sid) || !nfa.is_match(sid) {
                continue;
            }
            let len = match nfa.match_len(sid) {
                1 => nfa.pattern_len(nfa.match_pattern(sid, 0)),
                n => {
                    let at = sid.as_usize();
                    if at >= longest.len() {
                        longest.resize((nfa.memory_usage() / 4).max(at + 1), 0);
                    }
                    if longest[at] == 0 {
                        let max = (0..n)
                            .map(|k| nfa.pattern_len(nfa.match_pattern(sid, k)))
                            .max()
                            .unwrap_or(0);
                        longest[at] = u32::try_from(max).unwrap_or(u32::MAX);
                    }
                    longest[at] as usize
                }
            };
            let end = i + 1;
            let start = end.saturating_sub(len);
            run = match run {
                Some((a, e)) if start <= e => Some((a.min(start), end)),
                Some(done) => {
                    spans.push(done);
                    Some((start, end))
                }
                None => Some((start, end)),
            };
        }
        spans.extend(run);
        true
    }
}

impl Redactor {
    /// Collects the values held under secret-looking keys of `args`, at any depth.
    pub fn from_args(args: &Value) -> Redactor {
        fn collect_all(v: &Value, out: &mut Vec<Vec<u8>>) {
            match v {
                Value::String(s) => out.push(s.clone().into_bytes()),
                Value::Array(a) => a.iter().for_each(|x| collect_all(x, out)),
                Value::Object(o) => o.values().for_each(|x| collect_all(x, out)),
                _ => {}
            }
        }
        fn walk(v: &Value, out: &mut Vec<Vec<u8>>) {
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
        /// Secret values the shapes find in the arguments' strings (a password in a command
        /// line, say), and each as a shell would print it once it took the backslashes off
        /// (`a\ b` is echoed as `a b`): scrubbed from the output as well. A command quoted
        /// for another shell (`sh -c '... PASSWORD='\''a b'\'' ...'`, `ssh h "..."`) is
        /// read again as that shell receives it, to [`NESTED_QUOTING_MAX`] levels.
        fn shaped(v: &Value, out: &mut Vec<Vec<u8>>) {
            match v {
                Value::String(text) => {
                    shaped_text(text, out);
                    nested(text, out);
                    // A quote the shell does not read as one (an apostrophe in a comment or a
                    // here-document) turns every quote after it around in a reading of the
                    // whole text: each line is read on its own too.
                    if text.contains('\n') {
                        text.lines().for_each(|line| nested(line, out));
                    }
                }
                Value::Array(a) => a.iter().for_each(|x| shaped(x, out)),
                Value::Object(o) => o.values().for_each(|x| shaped(x, out)),
                _ => {}
            }
        }
        /// The levels of quoting within `text` ([`NESTED_QUOTING_MAX`]), each read as the shell
        /// it is quoted for receives it.
        fn nested(text: &str, out: &mut Vec<Vec<u8>>) {
            let mut level = text.to_string();
            for _ in 0..NESTED_QUOTING_MAX {
                if !level.contains(['\'', '"', '\\']) {
                    break;
                }
                // Bytes the shell makes (`$'\xff'`) are read as text here, only to
                // find the shapes of the next level.
                let inner = String::from_utf8_lossy(&shell_unquoted(&level)).into_owned();
                if inner == level {
                    break;
                }
                shaped_text(&inner, out);
                level = inner;
            }
        }
        fn shaped_text(text: &str, out: &mut Vec<Vec<u8>>) {
            let bytes = text.as_bytes();
            let mut spans = Vec::new();
            shapes::shapes_in_command(bytes, &mut spans);
            for (a, b) in spans {
                let Ok(found) = std::str::from_utf8(&bytes[a..b]) else {
                    continue;
                };
                if found.contains('\\') {
                    let mut plain = String::with_capacity(found.len());
                    let mut chars = found.chars();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => plain.extend(chars.next()),
                            c => plain.push(c),
                        }
                    }
                    out.push(plain.into_bytes());
                }
                // The value as the shell joins its pieces (`x'y z'w` is `xy zw`), with
                // the quotes around the span that belong to it.
                if found.contains(['\'', '"', '\\']) {
                    let a = if a > 0 && matches!(bytes[a - 1], b'\'' | b'"') {
                        a - 1 - usize::from(a > 1 && bytes[a - 2] == b'$')
                    } else {
                        a
                    };
                    let b = b + usize::from(matches!(bytes.get(b), Some(b'\'' | b'"')));
                    if let Ok(word) = std::str::from_utf8(&bytes[a..b]) {
                        out.push(shell_unquoted(word));
                    }
                }
                out.push(found.as_bytes().to_vec());
            }
        }
        let mut values = Vec::new();
        walk(args, &mut values);
        shaped(args, &mut values);
        Redactor::from_byte_values(values)
    }

    /// A redactor for the given secret values.
    pub fn from_values(values: impl IntoIterator<Item = String>) -> Redactor {
        Redactor::from_byte_values(values.into_iter().map(String::into_bytes))
    }

    /// [`Redactor::from_values`] for values that need not be text (a shell's `$'\xff'`): a
    /// value that is not UTF-8 is searched for as its bytes only.
    fn from_byte_values(values: impl IntoIterator<Item = Vec<u8>>) -> Redactor {
        let mut needles: Vec<Vec<u8>> = Vec::new();
        // A value over several lines may be printed a line at a time (`echo $V` unquoted, a
        // program that reads it line by line): each of its lines is a value too.
        let mut values: Vec<Vec<u8>> = values.into_iter().collect();
        let lines: Vec<Vec<u8>> = values
            .iter()
            .filter(|v| v.contains(&b'\n'))
            .flat_map(|v| {
                v.split(|&b| b == b'\n')
                    .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
                    .collect::<Vec<_>>()
            })
            .collect();
        values.extend(lines);
        values.retain(|v| v.len() >= SECRET_VALUE_BYTES_MIN);
        // Shortest first: where the budget below runs out, passwords and tokens have their
        // quoted forms before long values do.
        values.sort_by_key(Vec::len);
        values.dedup();
        let mut texts = Vec::new();
        for v in values {
            if let Ok(text) = std::str::from_utf8(&v) {
                let escaped = Value::String(text.to_string()).to_string();
                let escaped = &escaped[1..escaped.len() - 1];
                if escaped != text {
                    needles.push(escaped.as_bytes().to_vec());
                }
                // As a shell quotes it in single quotes (`bash -x`): each `'` as `'\''`.
                if text.contains('\'') {
                    needles.push(text.replace('\'', "'\\''").into_bytes());
                }
                texts.push(text.to_string());
            }
            needles.push(v);
        }
        // As each appears in a command that quotes it for a shell, or quotes a command that
        // does, while these forms add no more bytes than those above (at least
        // [`QUOTED_FORMS_BYTES_MIN`], at most [`QUOTED_FORMS_BYTES_MAX`]): the automaton takes
        // about twelve bytes per byte of needle (and its build four times that for a moment),
        // and a request of many values full of quotes would otherwise make it many times the
        // request's size.
        let essential: usize = needles.iter().map(Vec::len).sum();
        let mut budget = essential.clamp(QUOTED_FORMS_BYTES_MIN, QUOTED_FORMS_BYTES_MAX);
        for text in texts {
            let forms: Vec<Vec<u8>> = quoted_forms(&text)
                .into_iter()
                .skip(1)
                .map(String::into_bytes)
                .collect();
            let bytes: usize = forms.iter().map(Vec::len).sum();
            if bytes > budget {
                break;
            }
            budget -= bytes;
            needles.extend(forms);
        }
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        let matcher = Matcher::new(&needles);
        Redactor { needles, matcher }
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
            Value::Array(items) => {
                // An argv splits a flag from its value (`["curl", "-u", "alice:pw"]`,
                // `["--token", "..."]`): a string after a credential flag is judged with it.
                let mut out = Vec::with_capacity(items.len());
                let mut flag: Option<&str> = None;
                for v in items {
                    let logged = match (flag, v) {
                        (Some(f), Value::String(s)) => Value::String(after_flag(f, &self.text(s))),
                        _ => self.args(v),
                    };
                    flag = v.as_str();
                    out.push(logged);
                }
                Value::Array(out)
            }
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
        let found = self
            .matcher
            .as_ref()
            .is_some_and(|m| m.spans(bytes, &mut spans));
        if !found {
            for needle in &self.needles {
                for at in crate::find::bytes_iter(bytes, needle) {
                    spans.push((at, at + needle.len()));
                }
            }
        }
        shapes(bytes, &mut spans);
        if open_end && !bytes.is_empty() {
            let line = crate::find::byte_rev(b'\n', bytes).map_or(0, |i| i + 1);
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
            let line = crate::find::byte(b'\n', bytes).unwrap_or(bytes.len());
            let partial = self
                .needles
                .iter()
                .map(|n| prefix_suffix_overlap(bytes, n))
                .max()
                .unwrap_or(0);
            // A line may go on past its newline (`\<newline>` inside a value); for a newline
            // at the very start, the byte before it was cut off: the next line goes too.
            let mut line = line;
            while line < bytes.len() && (line == 0 || bytes[line - 1] == b'\\') {
                line = crate::find::byte(b'\n', &bytes[line + 1..])
                    .map_or(bytes.len(), |i| line + 1 + i);
            }
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

/// The value `v` (already scrubbed) of an argv element after `flag`: the password of
/// `-u`/`--user USER:PASS`, the whole of what follows `--password`, `--token` and other
/// secret-named flags; else `v`.
fn after_flag(flag: &str, v: &str) -> String {
    match flag {
        "-u" | "-U" | "--user" | "--proxy-user" => match v.split_once(':') {
            Some((user, pass)) if !pass.is_empty() => format!("{user}:{REDACTED}"),
            _ => v.to_string(),
        },
        f if f.starts_with("--") && f.len() > 2 && is_secret_key(&f[2..]) => REDACTED.into(),
        _ => v.to_string(),
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

/// Reads up to `max` digits of `radix` after `\k` in an ANSI-C string and pushes the character
/// they name (none: the escape as written).
/// `text` and how it appears quoted for a shell, to two levels (a value quoted in a command
/// that is itself quoted for `sh -c`): in single quotes (each `'` as `'\''`), in double quotes
/// (`\`, `"`, `$` and `` ` `` after a backslash), and bare (each byte a shell reads specially
/// after a backslash, a newline quoted). `text` first; at most 13 forms, none twice.
fn quoted_forms(text: &str) -> Vec<String> {
    fn single(s: &str) -> String {
        s.replace('\'', "'\\''")
    }
    fn double(s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 8);
        for c in s.chars() {
            if matches!(c, '\\' | '"' | '$' | '`') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }
    fn bare(s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 8);
        for c in s.chars() {
            match c {
                '\n' => out.push_str("'\n'"),
                c if c.is_ascii_alphanumeric() || !c.is_ascii() => out.push(c),
                c if "_=-.,/:@%+".contains(c) => out.push(c),
                c => {
                    out.push('\\');
                    out.push(c);
                }
            }
        }
        out
    }
    let mut forms = vec![text.to_string()];
    let mut from = 0;
    for _ in 0..2 {
        let end = forms.len();
        for i in from..end {
            for form in [single(&forms[i]), double(&forms[i]), bare(&forms[i])] {
                if !forms.contains(&form) {
                    forms.push(form);
                }
            }
        }
        from = end;
    }
    forms
}

fn push_escaped_number(
    out: &mut Vec<u8>,
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    max: usize,
    radix: u32,
    k: char,
) {
    let mut v: u32 = 0;
    let mut n = 0;
    while n < max {
        match chars.peek().and_then(|c| c.to_digit(radix)) {
            Some(d) => {
                v = v.saturating_mul(radix).saturating_add(d);
                chars.next();
                n += 1;
            }
            None => break,
        }
    }
    match (n, k, char::from_u32(v)) {
        (0, _, _) | (_, 'u' | 'U', None) => {
            out.push(b'\\');
            push_char(out, k);
        }
        // `\xHH` is a byte, whatever its value.
        (_, 'x', _) => out.push(v as u8),
        (_, _, Some(c)) => push_char(out, c),
        (_, _, None) => {}
    }
}

fn push_char(out: &mut Vec<u8>, c: char) {
    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
}

/// `word` as a shell reads it: quotes removed, the pieces joined, backslash escapes undone
/// (outside quotes, inside double quotes where the shell takes them, and `$'...'`'s, where
/// `\xHH` and `\NNN` are bytes, `\uHHHH` characters and `\cX` control bytes); `\<newline>`
/// joins two lines. Bytes, as the shell hands them on: not always UTF-8.
fn shell_unquoted(word: &str) -> Vec<u8> {
    #[derive(PartialEq)]
    enum Quote {
        No,
        Single,
        Double,
        AnsiC,
    }
    let mut out = Vec::with_capacity(word.len());
    let mut quote = Quote::No;
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        match (&quote, c) {
            (Quote::Single, '\'') | (Quote::Double, '"') | (Quote::AnsiC, '\'') => {
                quote = Quote::No
            }
            (Quote::Single, c) => push_char(&mut out, c),
            (Quote::Double, '\\') => match chars.peek() {
                Some(&n) if matches!(n, '"' | '\\' | '$' | '`' | '\n') => {
                    chars.next();
                    if n != '\n' {
                        push_char(&mut out, n);
                    }
                }
                _ => out.push(b'\\'),
            },
            (Quote::AnsiC, '\\') => match chars.next() {
                Some('n') => out.push(b'\n'),
                Some('t') => out.push(b'\t'),
                Some('r') => out.push(b'\r'),
                Some('a') => out.push(0x07),
                Some('b') => out.push(0x08),
                Some('e' | 'E') => out.push(0x1b),
                Some('f') => out.push(0x0c),
                Some('v') => out.push(0x0b),
                Some(n @ ('\'' | '"' | '\\' | '?')) => push_char(&mut out, n),
                // `\cX`: control-X (`\c?` is DEL).
                Some('c') => match chars.next() {
                    Some('?') => out.push(0x7f),
                    Some(x) if x.is_ascii() => out.push(x.to_ascii_uppercase() as u8 & 0x1f),
                    Some(x) => {
                        out.extend_from_slice(b"\\c");
                        push_char(&mut out, x);
                    }
                    None => out.extend_from_slice(b"\\c"),
                },
                // `\xHH` (one or two hex digits), `\uHHHH`, `\UHHHHHHHH`, `\NNN` (octal).
                Some(k @ ('x' | 'u' | 'U')) => {
                    let max = match k {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    push_escaped_number(&mut out, &mut chars, max, 16, k);
                }
                Some(d @ '0'..='7') => {
                    let mut v = d.to_digit(8).unwrap_or(0);
                    for _ in 0..2 {
                        match chars.peek().and_then(|c| c.to_digit(8)) {
                            Some(x) => {
                                v = v * 8 + x;
                                chars.next();
                            }
                            None => break,
                        }
                    }
                    out.push((v & 0xff) as u8);
                }
                Some(n) => {
                    out.push(b'\\');
                    push_char(&mut out, n);
                }
                None => out.push(b'\\'),
            },
            (Quote::No, '\\') => match chars.next() {
                Some('\n') | None => {}
                Some(n) => push_char(&mut out, n),
            },
            (Quote::No, '\'') => quote = Quote::Single,
            (Quote::No, '"') => quote = Quote::Double,
            (Quote::No, '$') if chars.peek() == Some(&'\'') => {
                chars.next();
                quote = Quote::AnsiC;
            }
            (_, c) => push_char(&mut out, c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
