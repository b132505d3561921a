//! Why a JSON body did not fit, said without repeating what was submitted:
//! serde's messages quote the offending value (`invalid type: integer
//! `4111111111111111``), so each known shape is rewritten to name only the
//! expected shape, and any other message loses the submitted values it quotes.

use serde_path_to_error::{Path, Segment};

/// What went wrong with one field, with no submitted value in it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Reason {
    /// The named field is absent.
    Missing(String),
    /// The named field is given twice.
    Duplicate(String),
    /// The object has a field it does not accept (its name is not repeated).
    UnknownField(String),
    /// The value at the path is wrong, and why.
    Invalid(String),
}

/// Rewrites a serde data error message (position already stripped).
pub(super) fn classify(msg: &str, body: &[u8]) -> Reason {
    if let Some(name) = quoted_name(msg, "missing field `") {
        return Reason::Missing(name.to_owned());
    }
    if let Some(name) = quoted_name(msg, "duplicate field `") {
        return Reason::Duplicate(name.to_owned());
    }
    if let Some(exp) = expected_after_quote(msg, "unknown field `") {
        return Reason::UnknownField(format!("is not an accepted field; {exp}"));
    }
    if let Some(exp) = expected_after_quote(msg, "unknown variant `") {
        return Reason::Invalid(format!("is not an accepted value; {exp}"));
    }
    for (prefix, what) in [
        ("invalid type: ", "has the wrong type"),
        ("invalid value: ", "is not a valid value"),
        ("invalid length ", "has the wrong length"),
    ] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            return Reason::Invalid(match rest.rfind(", expected ") {
                Some(i) => format!("{what}; expected {}", &rest[i + 11..]),
                None => what.to_owned(),
            });
        }
    }
    if msg.starts_with("UUID parsing failed") {
        return Reason::Invalid("must be a uuid".to_owned());
    }
    Reason::Invalid(redact(msg, body))
}

/// `name` out of ``prefix`name` `` when the whole message is that.
fn quoted_name<'a>(msg: &'a str, prefix: &str) -> Option<&'a str> {
    msg.strip_prefix(prefix)?
        .strip_suffix('`')
        .filter(|n| !n.contains('`'))
}

/// The schema's half of ``prefix`<submitted>`, expected one of ...``.
fn expected_after_quote(msg: &str, prefix: &str) -> Option<String> {
    let rest = msg.strip_prefix(prefix)?;
    if let Some(i) = rest.rfind("`, expected ") {
        return Some(format!("expected {}", &rest[i + 12..]));
    }
    rest.rfind("`, there are no ")
        .map(|i| format!("there are no {}", &rest[i + 16..]))
}

/// A message from a type's own check: quoted submitted values are cut out
/// (with a dangling "got"/"found"); if any submitted value is still in it,
/// only a generic reason is given.
fn redact(msg: &str, body: &[u8]) -> String {
    const GENERIC: &str = "is not a valid value";
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body) else {
        return GENERIC.to_owned();
    };
    let mut values = Vec::new();
    leaves(&doc, &mut values);
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let mut out = msg.to_owned();
    for v in &values {
        for pattern in [format!(", got `{v}`"), format!(" `{v}`"), format!("`{v}` ")] {
            out = out.replace(&pattern, "");
        }
        out = out
            .strip_suffix(&format!(", got {v}"))
            .map_or(out.clone(), str::to_owned);
    }
    let leaks = values
        .iter()
        .any(|v| v.chars().count() > 1 && out.contains(v.as_str()));
    if leaks || out.trim().is_empty() {
        GENERIC.to_owned()
    } else {
        out.trim().to_owned()
    }
}

/// Every scalar the body submitted, as text (strings, numbers, booleans are
/// not secret; object keys are covered by [`safe_path`]).
fn leaves(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => out.push(s.clone()),
        serde_json::Value::Number(n) => out.push(n.to_string()),
        serde_json::Value::Array(items) => items.iter().for_each(|i| leaves(i, out)),
        serde_json::Value::Object(m) => m.values().for_each(|i| leaves(i, out)),
        _ => {}
    }
}

/// The dotted path to a field (`merchant.mcc`, `items[2].amount`), with any
/// key that does not look like a field name (a map's key is submitted text)
/// shown as `?`; `parent` leaves out the last segment (an unknown field's own
/// name). `None` for the document itself.
pub(super) fn safe_path(path: &Path, parent: bool) -> Option<String> {
    let mut out = String::new();
    let take = path.iter().len().saturating_sub(usize::from(parent));
    for segment in path.iter().take(take) {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key: name } | Segment::Enum { variant: name } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(if field_like(name) { name } else { "?" });
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// A name a schema could have: a letter, then letters, digits, `_` or `-`.
fn field_like(name: &str) -> bool {
    name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
