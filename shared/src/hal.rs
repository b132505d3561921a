//! HAL (`application/hal+json`) documents: resources with `_links` and `_embedded`.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

pub const HAL_JSON: &str = "application/hal+json";

/// A HAL resource: its own properties plus named links and embedded resources.
#[derive(Clone, Debug, Default)]
pub struct Hal {
    props: Map<String, Value>,
    links: Map<String, Value>,
    embedded: Map<String, Value>,
}

impl Hal {
    /// A resource from a serializable value (must serialize to a JSON object).
    pub fn new(props: impl Serialize) -> Self {
        let props = match serde_json::to_value(props) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        Self {
            props,
            ..Self::default()
        }
    }

    pub fn link(mut self, rel: &str, href: impl Into<String>) -> Self {
        self.links
            .insert(rel.to_owned(), serde_json::json!({ "href": href.into() }));
        self
    }

    /// A templated link (RFC 6570), for example a cursor query.
    pub fn templated(mut self, rel: &str, href: impl Into<String>) -> Self {
        self.links.insert(
            rel.to_owned(),
            serde_json::json!({ "href": href.into(), "templated": true }),
        );
        self
    }

    pub fn embed(mut self, rel: &str, items: Vec<Hal>) -> Self {
        self.embedded.insert(
            rel.to_owned(),
            Value::Array(items.into_iter().map(Hal::into_value).collect()),
        );
        self
    }

    pub fn into_value(self) -> Value {
        let mut m = self.props;
        if !self.links.is_empty() {
            m.insert("_links".into(), Value::Object(self.links));
        }
        if !self.embedded.is_empty() {
            m.insert("_embedded".into(), Value::Object(self.embedded));
        }
        Value::Object(m)
    }
}

impl IntoResponse for Hal {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.into_value()).unwrap_or_default();
        let mut resp = body.into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(HAL_JSON));
        resp
    }
}

/// Joins a base URL and a path without doubling or dropping the slash.
pub fn href(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_links_and_embedded() {
        let doc = Hal::new(serde_json::json!({"id": 1}))
            .link("self", href("http://a/", "/x"))
            .embed("items", vec![Hal::new(serde_json::json!({"n": 2}))])
            .into_value();
        assert_eq!(doc["_links"]["self"]["href"], "http://a/x");
        assert_eq!(doc["_embedded"]["items"][0]["n"], 2);
        assert_eq!(doc["id"], 1);
    }
}
