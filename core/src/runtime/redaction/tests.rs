use proptest::prelude::*;

use super::*;
use crate::exec::output::CappedOutput;

/// Checks that `secret` is kept out of the logged arguments `args` and out of `printed`, the
/// job's output, as scrubbed by the redactor of `args`.
fn assert_kept_out(args: &Value, secret: &str, printed: &str) {
    let r = Redactor::from_args(args);
    let logged = r.args(args).to_string();
    assert!(!logged.contains(secret), "{args}: {logged}");
    let out = r.scrub(printed.as_bytes(), false, false);
    assert_eq!(
        leaks(&out, secret),
        None,
        "{args}: {}",
        String::from_utf8_lossy(&out)
    );
}

/// (text as it appears, the part of it that is secret).
fn corpus() -> Vec<(String, String)> {
    let pem_body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj";
    vec![
        (
            "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A".into(),
            "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A".into(),
        ),
        (
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv".into(),
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv".into(),
        ),
        ("AKIAIOSFODNN7EXAMPLE".into(), "AKIAIOSFODNN7EXAMPLE".into()),
        (
            "xoxb-123456789012-abcdefghijABCD".into(),
            "xoxb-123456789012-abcdefghijABCD".into(),
        ),
        (
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U".into(),
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U".into(),
        ),
        (
            format!("-----BEGIN RSA PRIVATE KEY-----\n{pem_body}\n-----END RSA PRIVATE KEY-----"),
            pem_body.into(),
        ),
        (
            "Authorization: Bearer s3cr3tB3ar3rT0k3nValue".into(),
            "s3cr3tB3ar3rT0k3nValue".into(),
        ),
        (
            "curl -u alice:Sup3rS3cretPassw0rd https://example.com".into(),
            "Sup3rS3cretPassw0rd".into(),
        ),
        (
            "curl -uALICE:NoSpacePassw0rd0001 https://example.com".into(),
            "NoSpacePassw0rd0001".into(),
        ),
        (
            "curl -u 'ALICE:Quoted SpacePassw0rd0002' https://example.com".into(),
            "Quoted SpacePassw0rd0002".into(),
        ),
        (
            "DB_PASSWORD='correct HorseBattery0007 staple' ./migrate".into(),
            "correct HorseBattery0007 staple".into(),
        ),
        (
            "Cookie: theme=dark; sid=CookieSid0009xyz; lang=en".into(),
            "sid=CookieSid0009xyz".into(),
        ),
        (
            r#"{"password": "quoted JsonSpace0008 value"}"#.into(),
            "quoted JsonSpace0008 value".into(),
        ),
        (
            "git clone https://bob:UrlPassw0rdS3cret@example.com/r.git".into(),
            "UrlPassw0rdS3cret".into(),
        ),
        (
            "X-API-KEY: k3yV4lu3Th4tIsS3cret".into(),
            "k3yV4lu3Th4tIsS3cret".into(),
        ),
        (
            "git clone https://bob:p@ssw0rdWithAt0014@example.com/r.git".into(),
            "p@ssw0rdWithAt0014".into(),
        ),
        (
            "curl --proxy-user alice:ProxyPassw0rd0015 -U bob:ProxyPassw0rd0016 x".into(),
            "ProxyPassw0rd0015".into(),
        ),
        (
            "curl -U bob:ProxyPassw0rd0016 https://example.com".into(),
            "ProxyPassw0rd0016".into(),
        ),
        // bash's ANSI-C quoting, an escaped space in a bare value, and the spaced forms of a
        // config file or a header, whose value runs to the end of the line.
        (
            r#"export DB_PASSWORD=$'hunter2 top\'secret0020'"#.into(),
            r#"hunter2 top\'secret0020"#.into(),
        ),
        (
            r#"PGPASSWORD=hunter3\ secretb0021 psql"#.into(),
            r#"hunter3\ secretb0021"#.into(),
        ),
        (
            "DB_PASSWORD = S18aLong0022 S18bLong0022".into(),
            "S18aLong0022 S18bLong0022".into(),
        ),
        (
            "private-token: S20aLong0023 S20bLong0023".into(),
            "S20aLong0023 S20bLong0023".into(),
        ),
        // A quoted value runs to the closing quote of its own kind, past quotes of the other
        // kind and escaped ones.
        (
            r#"DB_PASSWORD="it's my long passphrase0010""#.into(),
            "it's my long passphrase0010".into(),
        ),
        (
            r#"API_TOKEN='say "open sesame" now0011'"#.into(),
            r#"say "open sesame" now0011"#.into(),
        ),
        (
            r#"export GH_TOKEN="abc\"def-rest-of-token0012""#.into(),
            r#"abc\"def-rest-of-token0012"#.into(),
        ),
        (
            r#"curl -u "alice:pa's sw\"ord0013" https://example.com"#.into(),
            r#"pa's sw\"ord0013"#.into(),
        ),
        // A shell word of several pieces is one value: quoted and bare parts joined with no
        // blank, backslash escapes of any byte (a tab, a newline that continues the line).
        (
            "export DB_PASSWORD=abcLong'def ghi'jklLong0031 next".into(),
            "abcLong'def ghi'jklLong0031".into(),
        ),
        (
            r#"DB_PASSWORD="abc defLong"ghiLong0032 ./run"#.into(),
            r#"abc defLong"ghiLong0032"#.into(),
        ),
        (
            r"API_TOKEN='abcLong'\''defLong0033' cmd".into(),
            r"abcLong'\''defLong0033".into(),
        ),
        (
            "PGPASSWORD=multiLong\\\nlineLong0034 psql".into(),
            "multiLong\\\nlineLong0034".into(),
        ),
        (
            "PGPASSWORD=tabbedLong\\\tpartLong0036 psql".into(),
            "tabbedLong\\\tpartLong0036".into(),
        ),
        (
            r"private-token:\ aLong0035\ bLong0035".into(),
            r"\ aLong0035\ bLong0035".into(),
        ),
        // A double-quoted value continued on the next line; a comma inside a shell word; an
        // apostrophe in a header's value.
        (
            "export DB_PASSWORD=\"abcdLong\\\nijklLong0039\"; echo".into(),
            "abcdLong\\\nijklLong0039".into(),
        ),
        (
            "echo DB_PASSWORD=hunter2x,correcthorsebattery0040".into(),
            "hunter2x,correcthorsebattery0040".into(),
        ),
        (
            "password: don't-tell-anyone-its-mine0041".into(),
            "don't-tell-anyone-its-mine0041".into(),
        ),
        // A quoted value inside another word's value still runs to its own closing quote.
        (
            r#"echo API_KEY="x PASSWORD="long secretvalue here0037""#.into(),
            "long secretvalue here0037".into(),
        ),
        (
            "NOTE_TOKEN=it's PASSWORD='correct horse battery0038'".into(),
            "correct horse battery0038".into(),
        ),
    ]
}

/// Every 8-byte window of `secret`, raw and JSON-escaped.
fn fragments(secret: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for form in [secret.to_string(), {
        let e = Value::String(secret.into()).to_string();
        e[1..e.len() - 1].to_string()
    }] {
        let b = form.as_bytes();
        if b.len() < 8 {
            out.push(b.to_vec());
        } else {
            out.extend(b.windows(8).map(<[u8]>::to_vec));
        }
    }
    out
}

fn leaks(haystack: &[u8], secret: &str) -> Option<String> {
    fragments(secret)
        .into_iter()
        .find(|f| memchr::memmem::find(haystack, f).is_some())
        .map(|f| String::from_utf8_lossy(&f).into_owned())
}

#[test]
fn secret_keys_by_common_names() {
    for k in [
        "X-API-KEY",
        "GITHUB_PAT",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "PGPASS",
        "PGPASSWORD",
        "DB_PWD",
        "api_key",
        "apiKey",
        "accessToken",
        "Authorization",
        "AUTH_HEADER",
        "Cookie",
        "set-cookie",
        "client.secret",
        "ssh_private_key",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "passphrase",
    ] {
        assert!(is_secret_key(k), "{k} must be a secret key");
    }
    for k in [
        "PATH",
        "HOME",
        "PWD",
        "OLDPWD",
        "cmd",
        "argv",
        "GIT_AUTHOR_NAME",
        "LANG",
        "cwd",
        "stdin",
        "KEYBOARD_LAYOUT",
    ] {
        assert!(!is_secret_key(k), "{k} is not a secret key");
    }
}

#[test]
fn secret_keys_are_redacted_at_any_depth_and_their_values_scrubbed_from_output() {
    let args = json!({
        "cmd": "curl -H 'x: hunter22' example",
        "env": {"API_TOKEN": "hunter22", "PATH": "/bin"},
        "nested": [{"password": "pw-1234"}],
        "Authorization": "Bearer abc.def",
    });
    let mut secrets = Vec::new();
    let red = redact_args(&args, &mut secrets);
    assert_eq!(red["env"]["API_TOKEN"], REDACTED);
    assert_eq!(red["env"]["PATH"], "/bin");
    assert_eq!(red["nested"][0]["password"], REDACTED);
    assert_eq!(red["Authorization"], REDACTED);
    assert!(!red.to_string().contains("pw-1234"));
    assert!(!red.to_string().contains("hunter22"));
    let r = Redactor::from_values(secrets);
    let captured = |b: &[u8]| {
        let mut c = CappedOutput::new(usize::MAX / 2);
        c.push(b);
        c.finish()
    };
    let (out, cut) = r.output(&captured(b"token=hunter22 and pw-1234!"));
    assert_eq!(out, b"token=[REDACTED] and [REDACTED]!");
    assert!(!cut);
    let big = vec![b'a'; RECORD_OUTPUT_BYTES_MAX + 10];
    let (out, cut) = r.output(&captured(&big));
    assert_eq!(out.len(), RECORD_OUTPUT_BYTES_MAX);
    assert!(cut);
}

#[test]
fn a_value_with_quote_backslash_tab_or_newline_is_found_raw_and_escaped() {
    let secret = "p\"a\\s\ts\nw0rd-XYZ";
    let args = json!({
        "cmd": format!("echo '{secret}' | tee out"),
        "env": {"DB_PWD": secret},
        "stdin": format!("{{\"x\": {}}}", Value::String(secret.into())),
    });
    let r = Redactor::from_args(&args);
    let logged = r.args(&args).to_string();
    assert_eq!(leaks(logged.as_bytes(), secret), None, "{logged}");
    let escaped = Value::String(secret.into()).to_string();
    let out = r.scrub(format!("a {secret} b {escaped} c").as_bytes(), false, false);
    assert_eq!(
        leaks(&out, secret),
        None,
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn every_shape_is_scrubbed_in_every_string_of_the_arguments() {
    for (text, secret) in corpus() {
        let args = json!({
            "cmd": format!("run {text} now"),
            "argv": ["prog", text.clone()],
            "stdin": format!("line1\n{text}\nline3"),
            "env": {"NOT_NAMED_LIKE_IT": text.clone()},
        });
        let logged = Redactor::from_args(&args).args(&args).to_string();
        assert_eq!(leaks(logged.as_bytes(), &secret), None, "{logged}");
        assert!(logged.contains(REDACTED));
    }
}

#[test]
fn non_secrets_are_kept() {
    let r = Redactor::default();
    for text in [
        "echo hello; exit 4",
        "ls -la /tmp && git log --author=me",
        "https://example.com/path?q=1",
        "ssh://git@github.com/x.git",
        "eyJ not a jwt",
    ] {
        assert_eq!(r.text(text), text);
    }
}

/// A secret straddling the cap's head cut or its tail cut, at every offset: neither side keeps
/// a fragment.
#[test]
fn a_secret_across_the_output_cap_leaves_no_part_at_any_offset() {
    let known = "kn0wn-S3cret with space\tand\ttab".to_string();
    let mut kinds = corpus();
    kinds.push((known.clone(), known.clone()));
    let r = Redactor::from_values([known]);
    let cap: usize = 64;
    for (text, secret) in kinds {
        for off in 0..=text.len() + 1 {
            // Head: the text starts `off` bytes before the head's end.
            let mut stream = vec![b'.'; (cap / 2 + 1).saturating_sub(off)];
            stream.extend_from_slice(text.as_bytes());
            stream.extend_from_slice(&vec![b','; cap * 2]);
            // Tail: the text ends `off` bytes after the tail's start.
            stream.extend_from_slice(text.as_bytes());
            stream.extend_from_slice(&vec![b';'; (cap / 2).saturating_sub(off)]);
            for chunk in [1usize, 7, 4096] {
                let mut c = CappedOutput::new(cap);
                stream.chunks(chunk).for_each(|p| c.push(p));
                let captured = c.finish();
                let (out, _) = r.output(&captured);
                assert_eq!(
                    leaks(&out, &secret),
                    None,
                    "offset {off}: {:?}",
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }
}

#[test]
fn scrubbing_is_linear_on_adversarial_input() {
    // Repeated prefixes that each start a scan: must finish quickly (no quadratic rescans).
    let r = Redactor::from_values(["aaaaaaab".to_string()]);
    for unit in [
        &b"eyJ"[..],
        b"xoxb-",
        b"://",
        b"ghp_",
        b"-----BEGIN PRIVATE KEY-----",
        b"token=",
        b"token=\"",
        b"token='",
        b"token=\\\"",
        b"-u \"a:",
        b"token=$'",
        b"token=a\\ ",
        b"token: ",
        b"token = ",
        b"token=a'b c'",
        b"token=\"a\"b",
        b"token='a'\\''",
        b"token=a\\\n",
        b"token=$'a'b",
        b"token='token=",
        b"a",
    ] {
        let input: Vec<u8> = unit.iter().copied().cycle().take(400_000).collect();
        let out = r.scrub(&input, true, true);
        assert!(out.len() <= input.len() + REDACTED.len() * 2);
    }
    // The values the shapes find in a command become needles: a `NAME=` inside a value ends
    // where the value does, and must not add a needle of its own (each would copy the rest of
    // the value: quadratic bytes, then searched).
    for (open, unit, close) in [
        (": X_TOKEN=\"", "a PASSWORD=", "\""),
        (": X_TOKEN='", "a PASSWORD=", "'"),
        (": X_TOKEN=", "a\\ PASSWORD=", ""),
        ("X_TOKEN: ", "a PASSWORD: ", ""),
    ] {
        let cmd = format!("{open}{}{close}", unit.repeat(20_000));
        let r = Redactor::from_args(&json!({ "cmd": cmd }));
        assert!(r.needles.len() <= 8, "{open}: {} needles", r.needles.len());
    }
    // In a command a quoted value runs over newlines to its close: values that open and never
    // close, or close one another's quotes, still add needles of linear total size.
    for unit in [
        "PASSWORD='\n",
        "PASSWORD=\"\n",
        "A_TOKEN='a\nB_TOKEN=\"b\n",
        "PASSWORD=x'\n",
        "PASSWORD=$'\n",
    ] {
        let cmd = unit.repeat(20_000);
        let r = Redactor::from_args(&json!({ "cmd": cmd }));
        let bytes: usize = r.needles.iter().map(Vec::len).sum();
        assert!(
            bytes <= 16 * cmd.len(),
            "{unit:?}: {bytes} needle bytes for {} bytes",
            cmd.len()
        );
    }
}

#[test]
fn thousands_of_values_are_found_in_one_pass() {
    // A request may name many secret values and a job may print a lot: one search per value
    // made scrubbing cost values x bytes (a 1 MiB request with 20 000 values: minutes of
    // CPU). Every value that occurs is replaced, overlapping ones too, and nothing else.
    let values: Vec<String> = (0..20_000).map(|i| format!("sv{i:05}q")).collect();
    let r = Redactor::from_values(values.clone());
    assert_eq!(r.matcher.as_ref().map(|m| m.0.patterns_len()), Some(20_000));
    let mut text = Vec::new();
    for i in (0..20_000).step_by(7) {
        text.extend_from_slice(b"plain ");
        text.extend_from_slice(values[i].as_bytes());
        text.extend_from_slice(b" sv99999x\n");
    }
    let text: Vec<u8> = text.iter().copied().cycle().take(1 << 20).collect();
    let out = r.scrub(&text, false, false);
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains("q "), "a value's end survived");
    assert!(out.contains("plain [REDACTED] sv99999x"));
    assert_eq!(
        out.matches("sv99999x").count(),
        String::from_utf8(text).unwrap().matches("sv99999x").count()
    );
}

#[test]
fn values_that_end_one_another_cost_one_lookup_per_state_not_per_byte() {
    // `aaaa`, `aaaaa`, ... 1 400 values: in a run of `a`s every byte ends all of them. Counting
    // them at each byte made a server spend minutes on a job's output.
    let values: Vec<String> = (4..1_400).map(|n| "a".repeat(n)).collect();
    let r = Redactor::from_values(values);
    let text = vec![b'a'; 4 << 20];
    let out = r.scrub(&text, false, false);
    assert_eq!(out, REDACTED.as_bytes());
}

/// Every occurrence of every needle, overlapping ones included, one at a time: what the
/// automaton's spans must cover exactly.
fn spans_one_by_one(bytes: &[u8], needles: &[Vec<u8>]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    for n in needles {
        for at in 0..bytes.len() {
            if bytes[at..].starts_with(n) {
                spans.push((at, at + n.len()));
            }
        }
    }
    spans
}

fn kind_strategy() -> impl Strategy<Value = (String, String)> {
    let b62 = "[A-Za-z0-9]";
    prop_oneof![
        proptest::string::string_regex(&format!("{b62}{{36}}"))
            .unwrap()
            .prop_map(|s| (format!("ghp_{s}"), format!("ghp_{s}"))),
        proptest::string::string_regex("[A-Z0-9]{16}")
            .unwrap()
            .prop_map(|s| (format!("AKIA{s}"), format!("AKIA{s}"))),
        proptest::string::string_regex(&format!("{b62}{{12,30}}"))
            .unwrap()
            .prop_map(|s| (format!("xoxp-{s}"), format!("xoxp-{s}"))),
        proptest::string::string_regex(
            "[A-Za-z0-9_-]{8,20}\\.[A-Za-z0-9_-]{8,20}\\.[A-Za-z0-9_-]{8,30}"
        )
        .unwrap()
        .prop_map(|s| (format!("eyJ{s}"), format!("eyJ{s}"))),
        proptest::string::string_regex("[A-Za-z0-9+/]{16,40}")
            .unwrap()
            .prop_map(|s| (format!("Authorization: Bearer {s}"), s)),
        proptest::string::string_regex(&format!("{b62}{{10,24}}"))
            .unwrap()
            .prop_map(|s| (format!("https://u:{s}@h.example/"), s)),
        proptest::string::string_regex("[A-Za-z0-9+/]{8,16}\n[A-Za-z0-9+/]{8,16}")
            .unwrap()
            .prop_map(|s| (
                format!("-----BEGIN PRIVATE KEY-----\n{s}\n-----END PRIVATE KEY-----"),
                s
            )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The automaton covers exactly the bytes that a search for each value at every position
    /// covers: values that overlap, contain one another, or repeat back to back.
    #[test]
    fn one_pass_covers_what_every_search_covers(
        values in proptest::collection::vec("[ab]{4,9}", 1..8),
        text in "[ab\n]{0,300}",
    ) {
        let r = Redactor::from_values(values);
        let mut spans = Vec::new();
        prop_assert!(r.matcher.as_ref().unwrap().spans(text.as_bytes(), &mut spans));
        let expected = replace_spans(text.as_bytes(), spans_one_by_one(text.as_bytes(), &r.needles));
        prop_assert_eq!(replace_spans(text.as_bytes(), spans), expected);
    }

    /// Text made of the pieces the word and quote rules turn on (names, quotes of every kind,
    /// backslashes, `$'`, blanks, newlines), cut open or not: scrubbing never panics, and every
    /// span the shapes find lies within the text and in order.
    #[test]
    fn quote_and_escape_soup_never_panics(
        pieces in proptest::collection::vec(
            proptest::sample::select(vec![
                "token=", "PASSWORD: ", "key = ", "'", "\"", "\\", "\\\"", "$'", " ", "\t",
                "\n", "\r", "abc", "x", "=", ":", ";", "\\\n",
            ]),
            0..64,
        ),
        open_start in any::<bool>(),
        open_end in any::<bool>(),
    ) {
        let text = pieces.concat();
        let bytes = text.as_bytes();
        let mut spans = Vec::new();
        shapes(bytes, &mut spans);
        for &(a, b) in &spans {
            prop_assert!(a <= b && b <= bytes.len(), "{a}..{b} in {text:?}");
        }
        let _ = Redactor::from_args(&json!({ "cmd": text })).scrub(bytes, open_start, open_end);
    }

    /// Random text with an embedded secret (a shape, or a known value with any bytes), cut by
    /// a random cap, never logs a fragment of it.
    #[test]
    fn random_text_with_embedded_secrets_never_leaks_a_fragment(
        prefix in "[ -~\n\t]{0,80}",
        suffix in "[ -~\n\t]{0,80}",
        (text, secret) in kind_strategy(),
        known in "[ -~\t\n\"\\\\]{8,24}",
        cap in 0usize..200,
        chunk in 1usize..64,
        known_first in any::<bool>(),
    ) {
        let r = Redactor::from_values([known.clone()]);
        // A fragment that the random text around the secret holds on its own is not a leak.
        let around = format!("{prefix}\u{0}{suffix}");
        let around = format!("{around}\u{0}{}", Value::String(around.clone()));
        let leaks = |hay: &[u8], secret: &str| {
            fragments(secret)
                .into_iter()
                .filter(|f| memchr::memmem::find(around.as_bytes(), f).is_none())
                .find(|f| memchr::memmem::find(hay, f).is_some())
                .map(|f| String::from_utf8_lossy(&f).into_owned())
        };
        let stream = if known_first {
            format!("{prefix}{known}{text}{suffix}")
        } else {
            format!("{prefix}{text} {known}{suffix}")
        };
        // Whole, as arguments.
        let args = json!({"cmd": stream, "env": {"DB_PWD": known}});
        let logged = r.args(&args).to_string();
        prop_assert_eq!(leaks(logged.as_bytes(), &secret), None, "{}", logged);
        prop_assert_eq!(leaks(logged.as_bytes(), &known), None, "{}", logged);
        // As output under a cap.
        let mut c = CappedOutput::new(cap);
        stream.as_bytes().chunks(chunk).for_each(|p| c.push(p));
        let (out, _) = r.output(&c.finish());
        prop_assert_eq!(leaks(&out, &secret), None, "{:?}", String::from_utf8_lossy(&out));
        prop_assert_eq!(leaks(&out, &known), None, "{:?}", String::from_utf8_lossy(&out));
    }
}

#[test]
fn a_secret_with_a_quote_is_scrubbed_as_a_shell_quotes_it() {
    // `bash -x` prints a value holding `'` as 'abc'\''…'\''tail': each piece between the
    // escapes would otherwise reach the log.
    let r = Redactor::from_values(["abc'BashXtrace0011'tail".to_string()]);
    let traced = b"+ : 'abc'\\''BashXtrace0011'\\''tail'\n";
    let out = r.scrub(traced, false, false);
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains("BashXtrace0011"), "{text}");
}

#[test]
fn an_argv_flag_and_its_value_in_separate_elements_are_judged_together() {
    let r = Redactor::from_values(Vec::<String>::new());
    let args = serde_json::json!({"argv": [
        "curl", "-u", "alice:ArgvSplitPw0004", "--user", "bob:ArgvSplitPw0005",
        "--token", "ArgvSplitTok0006", "-v", "plain"
    ]});
    let logged = r.args(&args).to_string();
    for secret in ["ArgvSplitPw0004", "ArgvSplitPw0005", "ArgvSplitTok0006"] {
        assert!(!logged.contains(secret), "{logged}");
    }
    assert!(
        logged.contains("alice:") && logged.contains("\"plain\""),
        "{logged}"
    );
}

#[test]
fn a_secret_the_shapes_find_in_a_command_is_scrubbed_from_its_output_as_the_shell_prints_it() {
    // `PGPASSWORD=abc\ def` in the command line: the shell echoes it as `abc def`, which no
    // shape can tell from a value and the next word. The command's own value is known.
    let args = json!({"cmd": r"echo PGPASSWORD=cccLongSecret0030\ dddLongSecret0030"});
    let r = Redactor::from_args(&args);
    let out = r.scrub(
        b"PGPASSWORD=cccLongSecret0030 dddLongSecret0030\n",
        false,
        false,
    );
    assert_eq!(
        leaks(&out, "cccLongSecret0030 dddLongSecret0030"),
        None,
        "{}",
        String::from_utf8_lossy(&out)
    );
    let logged = r.args(&args).to_string();
    assert_eq!(
        leaks(logged.as_bytes(), "dddLongSecret0030"),
        None,
        "{logged}"
    );
}

#[test]
fn a_shell_word_of_several_pieces_is_scrubbed_from_the_output_as_the_shell_joins_it() {
    // `echo DB_PASSWORD=abc'def ghi'jkl` prints `DB_PASSWORD=abcdef ghijkl`: the pieces
    // joined, which no shape tells from a value and the next word.
    for (cmd, printed) in [
        (
            "echo DB_PASSWORD=aaaLong'bbb ccc'dddLong0040",
            "aaaLongbbb cccdddLong0040",
        ),
        (
            r#"echo API_TOKEN="eee fffLong"gggLong0041"#,
            "eee fffLonggggLong0041",
        ),
        (
            r"echo API_TOKEN='hhhLong'\''iiiLong0042'",
            "hhhLong'iiiLong0042",
        ),
        (
            r"echo DB_PASSWORD=$'jjjLong\tkkkLong0043'",
            "jjjLong\tkkkLong0043",
        ),
        (
            r"echo DB_PASSWORD=$'lllLong\x21mmmLong0044'",
            "lllLong!mmmLong0044",
        ),
    ] {
        let args = json!({ "cmd": cmd });
        let r = Redactor::from_args(&args);
        let out = r.scrub(format!("DB_PASSWORD={printed}\n").as_bytes(), false, false);
        assert_eq!(
            leaks(&out, printed),
            None,
            "{cmd}: {}",
            String::from_utf8_lossy(&out)
        );
        let logged = r.args(&args).to_string();
        assert!(logged.contains(REDACTED), "{logged}");
        for piece in printed.split([' ', '\'', '\t']) {
            if piece.len() >= 8 {
                assert!(!logged.contains(piece), "{cmd}: {piece} in {logged}");
            }
        }
    }
}

#[test]
fn a_shell_word_reads_as_the_shell_reads_it() {
    for (word, read) in [
        ("abc'def ghi'jkl", "abcdef ghijkl"),
        (r#""a b"c"#, "a bc"),
        (r"'abc'\''def'", "abc'def"),
        (r"a\ b\\c", r"a b\c"),
        ("a\\\nb", "ab"),
        (r#""q\"uote\$x\y""#, r#"q"uote$x\y"#),
        (r"$'x\ty\'z'", "x\ty'z"),
        (r"$'a\x21b\041c\u00e9d'", "a!b!céd"),
        (r"$'\xZ'", r"\xZ"),
        (r"$'a\cAb\c?c\ch'", "a\x01b\x7fc\x08"),
    ] {
        assert_eq!(shell_unquoted(word), read.as_bytes(), "{word}");
    }
    // Bytes past ASCII are bytes, as bash prints them: not UTF-8 characters.
    assert_eq!(shell_unquoted(r"$'a\xffb\351c'"), b"a\xffb\xe9c");
    assert_eq!(shell_unquoted(r"$'\u00e9'"), "é".as_bytes());
}

#[test]
fn a_value_named_inside_another_is_scrubbed_where_it_appears_alone() {
    // `X_TOKEN="PASSWORD=v"` sets X_TOKEN; a program that splits it finds PASSWORD's value v,
    // which then appears on its own: in the same command, and in the output.
    let args = json!({
        "cmd": "X_TOKEN=\"PASSWORD=hunter2secretvalue\"; mysql -p hunter2secretvalue -e select"
    });
    let r = Redactor::from_args(&args);
    let logged = r.args(&args).to_string();
    assert!(!logged.contains("hunter2secretvalue"), "{logged}");
    let out = r.scrub(b"got hunter2secretvalue\n", false, false);
    assert_eq!(
        leaks(&out, "hunter2secretvalue"),
        None,
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn a_secret_quoted_for_a_shell_within_the_command_is_scrubbed_as_that_shell_prints_it() {
    // The value the inner shell sets is what the job prints: no quote of the outer command
    // around it.
    for (cmd, secret) in [
        (
            "sh -c 'export DB_PASSWORD='\\''long secret value'\\''; echo \"$DB_PASSWORD\"'",
            "long secret value",
        ),
        (
            "ssh host \"bash -c 'API_TOKEN=\\\"two words here\\\" ./deploy'\"",
            "two words here",
        ),
        ("bash -c \"PASSWORD=\\\"a b c d\\\" ./run\"", "a b c d"),
    ] {
        assert_kept_out(
            &json!({ "cmd": cmd }),
            secret,
            &format!("value: {secret}\n"),
        );
    }
}

#[test]
fn a_quoted_value_over_several_lines_in_a_command_is_scrubbed_whole_and_line_by_line() {
    for (cmd, first) in [
        (
            "export DB_PASSWORD='first part of it\nsecond part of it'; ./run",
            "first part of it",
        ),
        (
            "export DB_PASSWORD=\"first part of it\nsecond part of it\"; ./run",
            "first part of it",
        ),
        (
            "DB_PASSWORD=x'first part of it\nsecond part of it' ./run",
            "xfirst part of it",
        ),
    ] {
        let args = json!({ "cmd": cmd });
        let r = Redactor::from_args(&args);
        let logged = r.args(&args).to_string();
        for part in [first, "second part of it"] {
            assert!(!logged.contains(part), "{cmd:?}: {logged}");
            for out in [format!("{part}\n"), format!("{first}\nsecond part of it\n")] {
                let scrubbed = r.scrub(out.as_bytes(), false, false);
                assert_eq!(
                    leaks(&scrubbed, part),
                    None,
                    "{cmd:?}: {}",
                    String::from_utf8_lossy(&scrubbed)
                );
            }
        }
    }
    // In output a quote still ends with its line: an apostrophe takes no more than that.
    let r = Redactor::default();
    let out = r.scrub(b"password='abc\nthe next line stays\n", false, false);
    assert!(
        String::from_utf8_lossy(&out).contains("the next line stays"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn a_quote_after_an_escaped_backslash_in_a_command_opens_a_piece_of_the_value() {
    // The shell reads `abc\\'def ghi'` as `abc\` then `'def ghi'`: one value, `abc\def ghi`.
    let args = json!({ "cmd": "PASSWORD=abc\\\\'def ghi' ./run" });
    let r = Redactor::from_args(&args);
    let logged = r.args(&args).to_string();
    assert!(!logged.contains("ghi"), "{logged}");
    let out = r.scrub(b"got abc\\def ghi\n", false, false);
    assert_eq!(
        leaks(&out, "abc\\def ghi"),
        None,
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn a_value_of_raw_bytes_is_scrubbed_as_the_shell_prints_it() {
    // bash prints `$'\xff'` as the byte 0xff, and `\cA` as 0x01.
    let args =
        json!({ "cmd": "export API_TOKEN=$'pre\\xffmid\\cApost'; printf %s \"$API_TOKEN\"" });
    let r = Redactor::from_args(&args);
    let out = r.scrub(b"got pre\xffmid\x01post\n", false, false);
    assert_eq!(
        out,
        b"got [REDACTED]\n",
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn an_apostrophe_the_shell_does_not_read_as_a_quote_hides_no_nested_value() {
    // The comment's apostrophe would turn every later quote around in a reading of the whole
    // command; each line is read on its own too.
    for cmd in [
        "# don't do this at home\nsh -c 'PASSWORD='\\''correct horse battery'\\''; echo \"pw=$PASSWORD\"'",
        "cat <<EOF\ndon't panic\nEOF\nsh -c 'PASSWORD='\\''correct horse battery'\\''; echo ok'",
    ] {
        let r = Redactor::from_args(&json!({ "cmd": cmd }));
        let out = r.scrub(b"pw=correct horse battery\n", false, false);
        assert_eq!(
            leaks(&out, "correct horse battery"),
            None,
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out)
        );
    }
}

#[test]
fn a_secret_keys_value_over_several_lines_is_scrubbed_line_by_line() {
    // `echo $DB_PASSWORD` (unquoted) prints the lines of an env value one at a time, and a
    // program may print any one of them.
    let args =
        json!({ "cmd": "env", "env": { "DB_PASSWORD": "first line here\nsecond line here" } });
    let r = Redactor::from_args(&args);
    for out in ["first line here second line here\n", "second line here\n"] {
        let scrubbed = r.scrub(out.as_bytes(), false, false);
        for part in ["first line here", "second line here"] {
            assert_eq!(
                leaks(&scrubbed, part),
                None,
                "{out:?}: {}",
                String::from_utf8_lossy(&scrubbed)
            );
        }
    }
}

#[test]
fn a_value_ending_in_an_escaped_backslash_is_scrubbed_as_printed() {
    // To the shell `\\;` is a backslash, then the command's end: the value is `x...?\`; the rule
    // for any text reads on through the `;`. Both readings are values.
    let args = json!({
        "cmd": "sh -c \"sh -c 'API_KEY=6rU954\\\\#8U3hj\\\\?\\\\\\\\; printf %s \\\"\\$API_KEY\\\"'\""
    });
    let r = Redactor::from_args(&args);
    let out = r.scrub(b"6rU954#8U3hj?\\\n", false, false);
    assert_eq!(
        leaks(&out, "6rU954#8U3hj?\\"),
        None,
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn the_quoted_forms_of_many_values_full_of_quotes_stay_within_their_budget() {
    // Each level of a shell's quoting roughly doubles a value full of quotes, and a value has
    // up to 13 forms: unbounded, 256 KB of such values made 7 MB of needles (and an automaton
    // of twelve times that).
    let values: Vec<String> = (0..64)
        .map(|i| {
            format!("{i}'\"$`\\ x")
                .repeat(500)
                .chars()
                .take(4000)
                .collect()
        })
        .collect();
    let raw: usize = values.iter().map(String::len).sum();
    let r = Redactor::from_values(values);
    let bytes: usize = r.needles.iter().map(Vec::len).sum();
    assert!(
        bytes <= 5 * raw + QUOTED_FORMS_BYTES_MAX,
        "{bytes} needle bytes for {raw} bytes of values"
    );
    // Short values come first: a password among them keeps its quoted forms.
    let r = Redactor::from_values(
        std::iter::once("p'w\"x y".to_string())
            .chain((0..64).map(|i| format!("{i}'\"$`\\ x").repeat(500))),
    );
    assert!(
        r.needles.contains(&b"p\\'w\\\"x\\ y".to_vec()),
        "the bare form"
    );
}

#[test]
fn a_value_printed_alone_is_scrubbed_where_the_command_holds_more_around_it() {
    for (cmd, secret) in [
        (
            "export API_KEY=${API_KEY:-sk4Xa9QpLm}; echo $API_KEY",
            "sk4Xa9QpLm",
        ),
        (
            ": ${DB_PASSWORD:=Hunter2Secret}; echo $DB_PASSWORD",
            "Hunter2Secret",
        ),
        ("echo ${GH_TOKEN-tokVal9988}", "tokVal9988"),
        (
            "printf '%s\\n' 'client_secret: abcdTok3n99' | awk '{print $2}'",
            "abcdTok3n99",
        ),
        (
            "echo '{\"access_token\": \"abcdTok3n99\", \"x\": 1}' | jq -r .access_token",
            "abcdTok3n99",
        ),
        (
            "python3 -c \"d={'api_key': 'sk4Xa9QpLm'}; print(d['api_key'])\"",
            "sk4Xa9QpLm",
        ),
        (
            "python3 -c 'import os; os.environ[\"API_KEY\"] = \"sk4Xa9QpLm\"; print(1)'",
            "sk4Xa9QpLm",
        ),
    ] {
        assert_kept_out(&json!({ "cmd": cmd }), secret, &format!("{secret}\n"));
    }
}

#[test]
fn a_long_option_named_as_a_secret_takes_the_next_word_in_a_command() {
    for (cmd, secret) in [
        (
            "docker login --username me --password s3cretValue9 reg.example",
            "s3cretValue9",
        ),
        ("mysql --user=me --password 'two words' db", "two words"),
        ("tool --api-key \"k3yValue77\" run", "k3yValue77"),
    ] {
        let args = json!({ "cmd": cmd });
        assert_kept_out(&args, secret, &format!("{secret}\n"));
        // What is not a secret stays.
        let logged = Redactor::from_args(&args).args(&args).to_string();
        assert!(
            logged.contains("me --password") || logged.contains("tool --api-key"),
            "{cmd}: {logged}"
        );
    }
    // Not an option with a value: the next word is another option, or there is none.
    let r = Redactor::from_args(&json!({ "cmd": "tool --password-stdin --verbose < file" }));
    assert_eq!(r.secret_count(), 0, "{:?}", r.needles);
}
