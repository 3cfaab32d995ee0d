//! PromQL templating with escaping: a hostile value cannot leave the string literal it is put in.
//!
//! Placeholders are written `{{ name }}` and belong *inside* a double-quoted label matcher, e.g.
//! `{namespace="{{ namespace }}", pod=~"{{ pods }}"}`. Plain values are escaped as PromQL string
//! content; `pods` is a regular expression whose alternatives are regex-escaped first.

use std::collections::BTreeMap;

/// Why a template could not be rendered.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum TemplateError {
    /// `{{ x }}` names no known variable.
    #[error("unknown placeholder {{{{ {0} }}}}; known: namespace, workload, pods, window")]
    Unknown(String),
    /// `{{` without a matching `}}`.
    #[error("unclosed placeholder at byte {0}")]
    Unclosed(usize),
}

/// Escapes `s` as the content of a double-quoted PromQL string.
pub fn escape_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\'' => out.push_str("\\'"),
            '`' => out.push_str("\\`"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Escapes RE2 metacharacters so `s` matches only itself.
pub fn escape_regex(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A regular expression matching exactly the given names (and nothing when empty).
pub fn exact_alternation<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let parts: Vec<String> = names.into_iter().map(escape_regex).collect();
    if parts.is_empty() {
        // Matches no pod name: pod names are never empty.
        "^$".to_string()
    } else {
        parts.join("|")
    }
}

/// Values substituted into templates. Each is raw; it is string-escaped on render.
#[derive(Clone, Debug, Default)]
pub struct Vars {
    values: BTreeMap<&'static str, String>,
}

impl Vars {
    /// Sets a variable. For a regular expression, build it with [`exact_alternation`] first.
    pub fn set(mut self, name: &'static str, v: impl Into<String>) -> Self {
        self.values.insert(name, v.into());
        self
    }

    /// Renders `template`, substituting every `{{ name }}`.
    pub fn render(&self, template: &str) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(template.len() + 64);
        let mut rest = template;
        let mut offset = 0;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or(TemplateError::Unclosed(offset + start))?;
            let name = after[..end].trim();
            let value = self
                .values
                .get(name)
                .ok_or_else(|| TemplateError::Unknown(name.to_string()))?;
            out.push_str(&escape_string(value));
            let consumed = start + 2 + end + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars::default()
            .set("namespace", "shop")
            .set("workload", "web")
            .set("pods", exact_alternation(["web-1", "web-2"]))
            .set("window", "1m")
    }

    #[test]
    fn renders_known_placeholders() {
        let q = vars()
            .render(
                r#"sum by (pod) (x{namespace="{{ namespace }}", pod=~"{{pods}}"}[{{ window }}])"#,
            )
            .expect("renders");
        assert_eq!(
            q,
            r#"sum by (pod) (x{namespace="shop", pod=~"web-1|web-2"}[1m])"#
        );
    }

    #[test]
    fn unknown_and_unclosed_placeholders_are_errors() {
        assert_eq!(
            vars().render("x{a=\"{{ nope }}\"}"),
            Err(TemplateError::Unknown("nope".into()))
        );
        assert!(matches!(
            vars().render("x{a=\"{{ namespace\"}"),
            Err(TemplateError::Unclosed(_))
        ));
    }

    #[test]
    fn hostile_values_stay_inside_their_string() {
        let hostile = [
            r#"shop"} or vector(1) or x{a=""#,
            r#"a\"b"#,
            "line\nbreak",
            r#"\"#,
            "back`tick'quote",
        ];
        for h in hostile {
            let q = Vars::default()
                .set("namespace", h)
                .render(r#"up{namespace="{{ namespace }}"}"#)
                .expect("renders");
            // Walk the rendered string literal: it must end exactly at the final `"}`.
            let body = &q["up{namespace=\"".len()..];
            let mut chars = body.char_indices();
            let mut close = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => {
                        close = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            assert_eq!(close, Some(body.len() - 2), "{h:?} broke out: {q}");
        }
    }

    #[test]
    fn regex_escaping_matches_only_the_name() {
        assert_eq!(escape_regex("a.b*c"), r"a\.b\*c");
        assert_eq!(exact_alternation(["x|y", "(z)"]), r"x\|y|\(z\)");
        assert_eq!(exact_alternation(std::iter::empty()), "^$");
        // Escaped regex then string-escaped: backslashes double.
        let q = Vars::default()
            .set("pods", exact_alternation(["a.b"]))
            .render(r#"{pod=~"{{ pods }}"}"#)
            .expect("renders");
        assert_eq!(q, r#"{pod=~"a\\.b"}"#);
    }
}
