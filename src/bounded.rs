//! Bounds on what the operator writes into status: condition messages and reasons, one-line
//! status strings and lists (pods, evidence). Input such as a Prometheus error, a PromQL query or
//! a list of pod names is not ours to size; status must stay small and valid whatever it is.

use std::borrow::Cow;

/// The longest condition message or status string written (bytes).
pub const MESSAGE_MAX: usize = 1024;
/// The longest condition reason (the apiserver's own limit for `metav1.Condition`).
pub const REASON_MAX: usize = 1024;
/// The most entries of a status list (pods, evidence).
pub const LIST_MAX: usize = 20;
/// What marks a cut.
pub const ELLIPSIS: &str = "…";

/// `s` cut to at most `max` bytes on a char boundary, ending with `…` when cut.
pub fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let cut = |mut end: usize| {
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        &s[..end]
    };
    if max < ELLIPSIS.len() {
        return Cow::Borrowed(cut(max));
    }
    let end = cut(max - ELLIPSIS.len()).len();
    Cow::Owned(format!("{}{ELLIPSIS}", &s[..end]))
}

/// A condition message or status string: one line (control characters become spaces, runs of
/// whitespace one space), at most [`MESSAGE_MAX`] bytes.
pub fn message(s: &str) -> String {
    let mut one = String::with_capacity(s.len().min(MESSAGE_MAX + 8));
    let mut space = false;
    for c in s.chars() {
        if c.is_whitespace() || c.is_control() {
            space = !one.is_empty();
            continue;
        }
        if space {
            one.push(' ');
            space = false;
        }
        one.push(c);
        if one.len() > MESSAGE_MAX + ELLIPSIS.len() {
            break; // enough to know it will be cut
        }
    }
    truncate(&one, MESSAGE_MAX).into_owned()
}

/// A condition reason valid for `metav1.Condition` (`^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`,
/// at most [`REASON_MAX`] bytes): other characters are dropped; `Unknown` when nothing is left.
pub fn reason(s: &str) -> String {
    let mut r: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ',' | ':'))
        .skip_while(|c| !c.is_ascii_alphabetic())
        .take(REASON_MAX)
        .collect();
    while r.ends_with([',', ':']) {
        r.pop();
    }
    if r.is_empty() { "Unknown".into() } else { r }
}

/// The first `max` entries of `v`, and how many were left off.
pub fn list<T>(mut v: Vec<T>, max: usize) -> (Vec<T>, usize) {
    let dropped = v.len().saturating_sub(max);
    v.truncate(max);
    (v, dropped)
}

/// A list of names for status: at most `max` entries, each at most 253 bytes (an object name);
/// when entries were left off, the last one says how many (`… and 12 more`).
pub fn names(v: Vec<String>, max: usize) -> Vec<String> {
    if v.len() <= max {
        return v
            .into_iter()
            .map(|s| truncate(&s, 253).into_owned())
            .collect();
    }
    let keep = max.saturating_sub(1);
    let more = v.len() - keep;
    let mut out: Vec<String> = v
        .into_iter()
        .take(keep)
        .map(|s| truncate(&s, 253).into_owned())
        .collect();
    out.push(format!("{ELLIPSIS} and {more} more"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries_with_an_ellipsis() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("exactly10!", 10), "exactly10!");
        let t = truncate("abcdefghijkl", 10);
        assert_eq!(t, "abcdefg…");
        assert!(t.len() <= 10);
        // Multi-byte characters are never split.
        let s = "ééééééééé"; // 18 bytes
        for max in 0..=s.len() {
            let t = truncate(s, max);
            assert!(t.len() <= max, "{max}: {t:?}");
        }
        assert_eq!(truncate(s, 8), "éé…"); // 4 + 3 bytes
        assert_eq!(truncate("🦀🦀🦀", 7), "🦀…");
        assert_eq!(truncate("abcdef", 2), "ab");
    }

    #[test]
    fn messages_are_one_bounded_line() {
        assert_eq!(message("a\nb\t\tc\r\n  d\u{0}e"), "a b c d e");
        assert_eq!(message("  padded  "), "padded");
        let long = "x".repeat(100_000);
        let m = message(&long);
        assert!(m.len() <= MESSAGE_MAX, "{}", m.len());
        assert!(m.ends_with(ELLIPSIS));
        let wide = "€".repeat(10_000);
        let m = message(&wide);
        assert!(m.len() <= MESSAGE_MAX && m.ends_with(ELLIPSIS));
        assert_eq!(message(&"y".repeat(MESSAGE_MAX)).len(), MESSAGE_MAX);
    }

    #[test]
    fn reasons_match_the_condition_pattern() {
        assert_eq!(reason("PrometheusUnreachable"), "PrometheusUnreachable");
        assert_eq!(reason("bad reason!"), "badreason");
        assert_eq!(reason("9lives"), "lives");
        assert_eq!(reason("a,b:"), "a,b");
        assert_eq!(reason("!!!"), "Unknown");
        assert_eq!(reason(&"R".repeat(5000)).len(), REASON_MAX);
    }

    #[test]
    fn lists_are_capped() {
        let (v, dropped) = list((0..50).collect::<Vec<_>>(), LIST_MAX);
        assert_eq!((v.len(), dropped), (LIST_MAX, 30));
        let (v, dropped) = list(vec![1, 2], LIST_MAX);
        assert_eq!((v, dropped), (vec![1, 2], 0));
        let pods: Vec<String> = (0..30).map(|i| format!("web-{i}")).collect();
        let n = names(pods, 5);
        assert_eq!(n.len(), 5);
        assert_eq!(n[3], "web-3");
        assert_eq!(n[4], "… and 26 more");
        assert_eq!(names(vec!["a".repeat(300)], 5)[0].len(), 253);
        assert_eq!(names(vec!["a".into(), "b".into()], 2), ["a", "b"]);
    }
}
