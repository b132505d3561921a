//! The HTTP client cellctl uses: global's ops API with the admin token, a
//! shard's admin API with that shard's token, problem+json errors shown.

use anyhow::Context as _;
use serde_json::Value;

/// A non-2xx answer: its status and the problem document it carried.
#[derive(Debug)]
pub struct ApiProblem {
    pub status: reqwest::StatusCode,
    pub body: Value,
}

impl std::fmt::Display for ApiProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let title = self.body["title"].as_str().unwrap_or("");
        match self.body["detail"].as_str() {
            Some(detail) if !detail.is_empty() => write!(f, "{}: {title}: {detail}", self.status),
            _ => write!(f, "{}: {title}", self.status),
        }
    }
}

impl std::error::Error for ApiProblem {}

impl ApiProblem {
    /// The status of the problem behind an error, if the API answered one.
    pub fn status_of(e: &anyhow::Error) -> Option<reqwest::StatusCode> {
        e.downcast_ref::<ApiProblem>().map(|p| p.status)
    }
}

pub struct Client {
    pub http: reqwest::Client,
    pub global: String,
    pub token: String,
    pub shard_token: String,
}

impl Client {
    pub fn url(base: &str, path: &str) -> String {
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        Self::send_as(req, &self.token).await
    }

    /// A request to a shard's admin API, with that shard's admin token.
    pub async fn send_shard(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        if self.shard_token.is_empty() {
            anyhow::bail!(
                "give the shard's admin token: --shard-token or CELLCTL_SHARD_ADMIN_TOKEN"
            );
        }
        Self::send_as(req, &self.shard_token).await
    }

    async fn send_as(req: reqwest::RequestBuilder, token: &str) -> anyhow::Result<Value> {
        let resp = req
            .bearer_auth(token)
            .send()
            .await
            .context("send request")?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(ApiProblem { status, body }.into());
        }
        Ok(body)
    }

    pub async fn get(&self, base: &str, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(Self::url(base, path))).await
    }

    pub async fn post(&self, base: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(Self::url(base, path)).json(body))
            .await
    }

    pub async fn shard_internal_url(&self, id: &str) -> anyhow::Result<String> {
        let shards = self.get(&self.global, "/ops/v1/shards").await?;
        shards["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["id"] == id)
            .and_then(|s| s["internal_url"].as_str())
            .map(str::to_owned)
            .with_context(|| format!("no shard {id} in the registry"))
    }
}

pub fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}
