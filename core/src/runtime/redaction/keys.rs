//! Which keys name secrets.

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
