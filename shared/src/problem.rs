//! RFC 9457 `application/problem+json` errors and a JSON extractor whose
//! rejections come back in the same format, naming the field and the reason.

use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

mod reason;
use reason::Reason;

use crate::money::{Money, MoneyError};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

/// A problem document. `type` is a stable URI-ish slug clients can match on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Where to go next, for example global login when a token is stale.
    #[serde(rename = "_links", skip_serializing_if = "Option::is_none")]
    pub links: Option<serde_json::Value>,
    /// Seconds, mirrored in the `Retry-After` header.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, title: &str) -> Self {
        Self {
            kind: format!("https://cellbank.dev/problems/{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: None,
            errors: Vec::new(),
            links: None,
            retry_after: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn field(mut self, field: impl Into<String>, reason: impl Into<String>) -> Self {
        self.errors.push(FieldError {
            field: field.into(),
            reason: reason.into(),
        });
        self
    }

    pub fn links(mut self, links: serde_json::Value) -> Self {
        self.links = Some(links);
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// 422 for one invalid field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        let field = field.into();
        let reason = reason.into();
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
            "a field is invalid",
        )
        .detail(format!("{field}: {reason}"))
        .field(field, reason)
    }

    /// 422 for an amount or currency [`Money`](crate::money::Money)
    /// refused: the rule it broke, not the value (its errors quote it).
    pub fn bad_money(field: impl Into<String>, e: &MoneyError) -> Self {
        Self::invalid(field, money_reason(e))
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "malformed request").detail(detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "not found").detail(detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "conflict").detail(detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "not authenticated",
        )
        .detail(detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "not allowed").detail(detail)
    }

    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "temporarily unavailable",
        )
        .detail(detail)
        .retry_after(retry_after_secs)
    }

    /// 413: the body is larger than this service (or its broker) takes.
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "request body too large",
        )
        .detail("body: is too large")
        .field("body", "is too large")
    }

    /// A 500 that says nothing internal; the caller logs the cause.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let retry = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (status, body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = retry {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// Why an amount or currency was refused, without the submitted value.
pub fn money_reason(e: &MoneyError) -> String {
    match e {
        MoneyError::UnknownCurrency(_) => {
            "is not a known currency; expected one of BRL, USD, EUR, MXN, COP".to_owned()
        }
        MoneyError::NotPositive(_) => "must be positive".to_owned(),
        MoneyError::TooLarge(_) => format!("must be at most {}", Money::MAX_MINOR),
        MoneyError::CurrencyMismatch(..) => "must be in the account's currency".to_owned(),
        MoneyError::Overflow => "is out of range".to_owned(),
    }
}

/// Like `axum::Json`, but a wrong content type, malformed JSON or a field of
/// the wrong shape answers a problem naming the field.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let mime = v.split(';').next().unwrap_or("").trim();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !json_type {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "expected a JSON body",
            )
            .detail("content-type must be application/json"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let status = e.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::payload_too_large()
            } else {
                Problem::bad_request(e.body_text())
            }
        })?;
        decode_json(&bytes).map(ApiJson)
    }
}

/// Decodes JSON, mapping errors to a problem naming the failing field and
/// the expected shape, never a submitted value.
#[allow(clippy::result_large_err)] // a Problem is the response body; it is built once per error
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().clone();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                data_problem(&path, &strip_position(&inner.to_string()), bytes)
            }
            // Syntax errors name a position, not a value.
            _ => Problem::bad_request(format!("malformed json: {inner}")),
        }
    })
}

/// A 422 for a body of the wrong shape at `path`.
fn data_problem(path: &serde_path_to_error::Path, msg: &str, bytes: &[u8]) -> Problem {
    let reason = reason::classify(msg, bytes);
    let at = reason::safe_path(path, matches!(reason, Reason::UnknownField(_)));
    let child = |name: &str| {
        at.as_ref()
            .map_or_else(|| name.to_owned(), |p| format!("{p}.{name}"))
    };
    let here = || at.clone().unwrap_or_else(|| "body".to_owned());
    match reason {
        // A missing field is named as itself (`merchant.mcc`), not as the
        // object that lacks it.
        Reason::Missing(name) => Problem::invalid(child(&name), "is required"),
        Reason::Duplicate(name) => Problem::invalid(child(&name), "is given more than once"),
        Reason::UnknownField(why) | Reason::Invalid(why) => Problem::invalid(here(), why),
    }
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        amount: i64,
        inner: Inner,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        currency: String,
    }

    #[test]
    fn names_the_failing_field() {
        let p =
            decode_json::<Body>(br#"{"amount": "x", "inner": {"currency": "BRL"}}"#).unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(p.errors[0].field, "amount");
        let p = decode_json::<Body>(br#"{"amount": 1, "inner": {}}"#).unwrap_err();
        assert_eq!(p.errors[0].field, "inner.currency");
        assert_eq!(p.errors[0].reason, "is required");
        assert_eq!(p.detail.as_deref(), Some("inner.currency: is required"));
        let p = decode_json::<Body>(br#"{"inner": {"currency": "BRL"}}"#).unwrap_err();
        assert_eq!(p.errors[0].field, "amount");
        assert_eq!(p.errors[0].reason, "is required");
        let p = decode_json::<Body>(b"{nope").unwrap_err();
        assert_eq!(p.status, 400);
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Card {
        pan: String,
        holder: Holder,
        kind: Kind,
        expires: chrono::NaiveDate,
        id: Option<uuid::Uuid>,
        currency: Option<crate::money::Currency>,
        tags: Option<Vec<u8>>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Holder {
        name: String,
        age: u8,
    }
    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Credit,
        Debit,
    }

    const PAN: &str = "4111111111111111";

    fn card(edit: &str) -> String {
        let mut v = serde_json::json!({
            "pan": "4000000000000002", "holder": {"name": "Ada", "age": 30},
            "kind": "credit", "expires": "2030-01-31",
        });
        let patch: serde_json::Value = serde_json::from_str(edit).unwrap();
        for (k, x) in patch.as_object().unwrap() {
            v[k] = x.clone();
        }
        v.to_string()
    }

    /// Every wrong shape answers a problem that names the field and what was
    /// expected, and none repeats the submitted value.
    #[test]
    fn problems_never_repeat_submitted_values() {
        for (edit, field, says) in [
            (r#"{"pan": 4111111111111111}"#, "pan", "expected a string"),
            (r#"{"kind": "4111111111111111"}"#, "kind", "`credit`"),
            (
                r#"{"holder": {"name": "Ada", "age": 4111111111111111}}"#,
                "holder.age",
                "u8",
            ),
            (
                r#"{"holder": {"name": 4111111111111111, "age": 3}}"#,
                "holder.name",
                "string",
            ),
            (
                r#"{"holder": {"name": "a", "age": 1, "4111111111111111": 1}}"#,
                "holder",
                "`name`",
            ),
            (r#"{"4111111111111111": 1}"#, "body", "`pan`"),
            (r#"{"expires": "4111111111111111"}"#, "expires", ""),
            (r#"{"id": "4111111111111111"}"#, "id", "uuid"),
            (
                r#"{"currency": "4111111111111111"}"#,
                "currency",
                "expected one of BRL",
            ),
            (r#"{"tags": [1, 4111111111111111]}"#, "tags[1]", "u8"),
            (r#"{"tags": "4111111111111111"}"#, "tags", "sequence"),
        ] {
            let p = decode_json::<Card>(card(edit).as_bytes()).unwrap_err();
            let text = serde_json::to_string(&p).unwrap();
            assert!(!text.contains(PAN), "{edit} echoed: {text}");
            assert_eq!(p.status, 422, "{text}");
            assert_eq!(p.errors[0].field, field, "{text}");
            assert!(p.errors[0].reason.contains(says), "{edit}: {text}");
        }
        let p = decode_json::<Card>(format!("[\"{PAN}\"]").as_bytes()).unwrap_err();
        assert!(!serde_json::to_string(&p).unwrap().contains(PAN));
        let p = decode_json::<Card>(format!("{{\"pan\": \"{PAN}\",").as_bytes()).unwrap_err();
        assert_eq!(p.status, 400);
        assert!(!serde_json::to_string(&p).unwrap().contains(PAN));
    }

    #[test]
    fn money_problems_name_the_rule_not_the_value() {
        for e in [
            MoneyError::NotPositive(-4111111111111111),
            MoneyError::TooLarge(4111111111111111111),
            MoneyError::UnknownCurrency(PAN.into()),
        ] {
            let p = Problem::bad_money("amount", &e);
            let text = serde_json::to_string(&p).unwrap();
            assert!(!text.contains(PAN), "{text}");
            assert_eq!(p.errors[0].field, "amount");
        }
    }

    #[test]
    fn map_keys_that_are_not_names_are_not_repeated() {
        let p = decode_json::<std::collections::HashMap<String, Inner>>(
            format!(r#"{{"{PAN}": {{"currency": 1}}}}"#).as_bytes(),
        )
        .unwrap_err();
        assert_eq!(p.errors[0].field, "?.currency");
    }
}
