//! The partners' tables in SQL: registering, listing, revoking and rotating
//! partners, and finding the live partner a key belongs to.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use cellbank_shared::secret::Secret;

use super::keys;
use super::Scope;
use crate::directory::DirectoryError;

/// A partner as the ops API shows it (never a key).
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct PartnerView {
    pub partner_id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    pub rate_per_sec: i32,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Keys that authenticate now: 1, or 2 during a rotation.
    pub live_keys: i64,
}

/// A live partner, as an authenticated request knows it.
#[derive(Clone, Debug)]
pub struct PartnerRecord {
    pub partner_id: Uuid,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub rate_per_sec: u32,
}

const VIEW: &str = "SELECT p.partner_id, p.name, p.scopes, p.rate_per_sec, p.created_at, p.revoked_at,
        (SELECT count(*) FROM partner_keys k WHERE k.partner_id = p.partner_id AND k.retired_at IS NULL) AS live_keys
   FROM partners p";

/// Registers a partner with its first key; answers the partner and the key.
pub async fn create(
    pool: &PgPool,
    name: &str,
    scopes: &[Scope],
    rate_per_sec: u32,
) -> Result<(PartnerView, Secret), DirectoryError> {
    let id = Uuid::now_v7();
    let key = keys::generate();
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO partners (partner_id, name, scopes, rate_per_sec) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(name)
    .bind(&scopes)
    .bind(i32::try_from(rate_per_sec).unwrap_or(i32::MAX))
    .execute(&mut *tx)
    .await
    .map_err(|e| match DirectoryError::from(e) {
        DirectoryError::Conflict(_) => {
            DirectoryError::Conflict(format!("a partner named {name} exists"))
        }
        other => other,
    })?;
    insert_key(&mut tx, id, &key).await?;
    tx.commit().await?;
    Ok((view(pool, id).await?.expect("just created"), key))
}

async fn insert_key(
    tx: &mut sqlx::PgConnection,
    partner_id: Uuid,
    key: &Secret,
) -> Result<(), DirectoryError> {
    sqlx::query("INSERT INTO partner_keys (key_hash, partner_id) VALUES ($1, $2)")
        .bind(keys::hash(key.expose()))
        .bind(partner_id)
        .execute(tx)
        .await?;
    Ok(())
}

/// One partner as the ops API shows it.
pub async fn view(pool: &PgPool, id: Uuid) -> Result<Option<PartnerView>, DirectoryError> {
    Ok(sqlx::query_as(&format!("{VIEW} WHERE p.partner_id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// Every partner, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<PartnerView>, DirectoryError> {
    Ok(
        sqlx::query_as(&format!("{VIEW} ORDER BY p.created_at, p.partner_id"))
            .fetch_all(pool)
            .await?,
    )
}

/// Revokes a partner and every key of it; revoking twice is a no-op.
pub async fn revoke(pool: &PgPool, id: Uuid) -> Result<PartnerView, DirectoryError> {
    let mut tx = pool.begin().await?;
    let found = sqlx::query(
        "UPDATE partners SET revoked_at = coalesce(revoked_at, now()) WHERE partner_id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if found.rows_affected() == 0 {
        return Err(DirectoryError::NotFound(format!("partner {id}")));
    }
    sqlx::query(
        "UPDATE partner_keys SET retired_at = now() WHERE partner_id = $1 AND retired_at IS NULL",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(view(pool, id).await?.expect("exists"))
}

/// Gives a partner a new key. The newest key before it stays valid (two keys
/// during a rotation); any older one is retired now.
pub async fn rotate(pool: &PgPool, id: Uuid) -> Result<(PartnerView, Secret), DirectoryError> {
    let mut tx = pool.begin().await?;
    let revoked: Option<Option<DateTime<Utc>>> =
        sqlx::query_scalar("SELECT revoked_at FROM partners WHERE partner_id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    match revoked {
        None => return Err(DirectoryError::NotFound(format!("partner {id}"))),
        Some(Some(_)) => {
            return Err(DirectoryError::Conflict(
                "the partner is revoked; register a new one".into(),
            ))
        }
        Some(None) => {}
    }
    sqlx::query(
        "UPDATE partner_keys SET retired_at = now()
          WHERE partner_id = $1 AND retired_at IS NULL
            AND key_hash <> (SELECT key_hash FROM partner_keys
                              WHERE partner_id = $1 AND retired_at IS NULL
                              ORDER BY created_at DESC, key_hash LIMIT 1)",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let key = keys::generate();
    insert_key(&mut tx, id, &key).await?;
    tx.commit().await?;
    Ok((view(pool, id).await?.expect("exists"), key))
}

#[derive(sqlx::FromRow)]
struct LiveRow {
    partner_id: Uuid,
    name: String,
    scopes: Vec<String>,
    rate_per_sec: i32,
}

/// The live partner a key belongs to: the key not retired, the partner not
/// revoked.
pub async fn by_key_hash(
    pool: &PgPool,
    key_hash: &[u8],
) -> Result<Option<PartnerRecord>, DirectoryError> {
    let row: Option<LiveRow> = sqlx::query_as(
        "SELECT p.partner_id, p.name, p.scopes, p.rate_per_sec
           FROM partner_keys k JOIN partners p USING (partner_id)
          WHERE k.key_hash = $1 AND k.retired_at IS NULL AND p.revoked_at IS NULL",
    )
    .bind(key_hash)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| PartnerRecord {
        partner_id: r.partner_id,
        name: r.name,
        scopes: r.scopes.iter().filter_map(|s| s.parse().ok()).collect(),
        rate_per_sec: u32::try_from(r.rate_per_sec).unwrap_or(1).max(1),
    }))
}
