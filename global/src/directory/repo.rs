//! The directory's tables: shards, customers and identifiers, read and
//! written in SQL. Functions that write take a connection (usually a
//! transaction's); the cached reads behind [`Directory`](super::Directory)
//! are here too.

use cellbank_shared::db::ConstraintExt;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use cellbank_shared::ids::{CustomerId, ShardId};

use super::types::{PlacementRow, ShardRow};
use super::{
    DirectoryError, IdentifierKind, IdentifierView, NewShard, Placement, Shard, ShardState,
};

/// The customer an identifier belongs to, if any.
pub(super) async fn find_customer(
    pool: &PgPool,
    kind: IdentifierKind,
    value: &str,
) -> Result<Option<CustomerId>, DirectoryError> {
    let found: Option<Uuid> =
        sqlx::query_scalar("SELECT customer_id FROM identifiers WHERE kind = $1 AND value = $2")
            .bind(kind.as_str())
            .bind(value)
            .fetch_optional(pool)
            .await
            .map_err(DirectoryError::Unavailable)?;
    Ok(found.map(CustomerId::from_uuid))
}

/// Where a customer lives, if they exist.
pub(super) async fn find_placement(
    pool: &PgPool,
    customer_id: CustomerId,
) -> Result<Option<Placement>, DirectoryError> {
    let row: Option<PlacementRow> = sqlx::query_as(
        "SELECT customer_id, shard_id, epoch, state FROM customers WHERE customer_id = $1",
    )
    .bind(customer_id.as_uuid())
    .fetch_optional(pool)
    .await
    .map_err(DirectoryError::Unavailable)?;
    row.map(Placement::try_from).transpose()
}

const SHARD_COLUMNS: &str =
    "id, public_url, internal_url, broker_bootstrap, state, capacity, customers";

pub async fn list_shards(pool: &PgPool) -> Result<Vec<Shard>, DirectoryError> {
    let rows: Vec<ShardRow> =
        sqlx::query_as(&format!("SELECT {SHARD_COLUMNS} FROM shards ORDER BY id"))
            .fetch_all(pool)
            .await
            .map_err(DirectoryError::Unavailable)?;
    rows.into_iter().map(Shard::try_from).collect()
}

pub async fn insert_shard(conn: &mut PgConnection, s: &NewShard) -> Result<Shard, DirectoryError> {
    let row: ShardRow = sqlx::query_as(&format!(
        "INSERT INTO shards (id, public_url, internal_url, broker_bootstrap, capacity)
         VALUES ($1, $2, $3, $4, $5) RETURNING {SHARD_COLUMNS}"
    ))
    .bind(s.id.as_str())
    .bind(&s.public_url)
    .bind(&s.internal_url)
    .bind(&s.broker_bootstrap)
    .bind(s.capacity)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match DirectoryError::from(e) {
        DirectoryError::Conflict(_) => DirectoryError::Conflict(format!("shard {} exists", s.id)),
        other => other,
    })?;
    row.try_into()
}

pub async fn set_shard_state(
    conn: &mut PgConnection,
    id: &ShardId,
    state: ShardState,
) -> Result<Shard, DirectoryError> {
    let state = match state {
        ShardState::Active => "active",
        ShardState::Draining => "draining",
        ShardState::Closed => "closed",
    };
    let row: Option<ShardRow> = sqlx::query_as(&format!(
        "UPDATE shards SET state = $2, updated_at = now() WHERE id = $1 RETURNING {SHARD_COLUMNS}"
    ))
    .bind(id.as_str())
    .bind(state)
    .fetch_optional(&mut *conn)
    .await?;
    row.ok_or_else(|| DirectoryError::NotFound(format!("shard {id}")))?
        .try_into()
}

/// Picks the least loaded active shard with room and counts the customer in
/// it; the row lock serialises concurrent placements on that shard.
pub async fn take_seat(conn: &mut PgConnection) -> Result<Shard, DirectoryError> {
    let row: Option<ShardRow> = sqlx::query_as(&format!(
        "SELECT {SHARD_COLUMNS} FROM shards
         WHERE state = 'active' AND customers < capacity
         ORDER BY customers::float8 / capacity, id
         LIMIT 1 FOR UPDATE"
    ))
    .fetch_optional(&mut *conn)
    .await?;
    let shard: Shard = row.ok_or(DirectoryError::NoCapacity)?.try_into()?;
    sqlx::query("UPDATE shards SET customers = customers + 1, updated_at = now() WHERE id = $1")
        .bind(shard.id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(shard)
}

pub async fn release_seat(conn: &mut PgConnection, id: &ShardId) -> Result<(), DirectoryError> {
    sqlx::query(
        "UPDATE shards SET customers = GREATEST(customers - 1, 0), updated_at = now() WHERE id = $1",
    )
    .bind(id.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn insert_customer(
    conn: &mut PgConnection,
    customer_id: CustomerId,
    shard_id: &ShardId,
    name: &str,
    currency: &str,
) -> Result<(), DirectoryError> {
    sqlx::query(
        "INSERT INTO customers (customer_id, shard_id, epoch, state, name, currency)
         VALUES ($1, $2, 1, 'pending', $3, $4)",
    )
    .bind(customer_id.as_uuid())
    .bind(shard_id.as_str())
    .bind(name)
    .bind(currency)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A sign-up not yet completed: who, where, and what they asked for.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PendingSignUp {
    pub customer_id: Uuid,
    pub shard_id: String,
    pub name: String,
    pub currency: Option<String>,
    pub state: String,
}

/// The customer behind a login with their sign-up details, if any.
pub async fn sign_up_of(
    pool: &PgPool,
    login: &str,
) -> Result<Option<PendingSignUp>, DirectoryError> {
    Ok(sqlx::query_as(
        "SELECT c.customer_id, c.shard_id, c.name, c.currency, c.state
           FROM identifiers i JOIN customers c USING (customer_id)
          WHERE i.kind = 'login' AND i.value = $1",
    )
    .bind(login)
    .fetch_optional(pool)
    .await?)
}

/// Sign-ups pending for longer than `older_than_secs` (interrupted ones).
pub async fn stalled_sign_ups(
    pool: &PgPool,
    older_than_secs: i64,
) -> Result<Vec<PendingSignUp>, DirectoryError> {
    Ok(sqlx::query_as(
        "SELECT customer_id, shard_id, name, currency, state FROM customers
          WHERE state = 'pending' AND created_at < now() - make_interval(secs => $1)
          ORDER BY created_at LIMIT 50",
    )
    .bind(older_than_secs as f64)
    .fetch_all(pool)
    .await?)
}

pub async fn set_customer_state(
    conn: &mut PgConnection,
    customer_id: CustomerId,
    state: &str,
) -> Result<(), DirectoryError> {
    sqlx::query("UPDATE customers SET state = $2, updated_at = now() WHERE customer_id = $1")
        .bind(customer_id.as_uuid())
        .bind(state)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn delete_customer(
    conn: &mut PgConnection,
    customer_id: CustomerId,
) -> Result<(), DirectoryError> {
    sqlx::query("DELETE FROM customers WHERE customer_id = $1")
        .bind(customer_id.as_uuid())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Points a customer at a shard under the next epoch (the directory flip of a
/// move). Returns the new placement.
pub async fn reassign(
    conn: &mut PgConnection,
    customer_id: CustomerId,
    shard_id: &ShardId,
) -> Result<Placement, DirectoryError> {
    let old: Option<String> =
        sqlx::query_scalar("SELECT shard_id FROM customers WHERE customer_id = $1 FOR UPDATE")
            .bind(customer_id.as_uuid())
            .fetch_optional(&mut *conn)
            .await?;
    let old = old.ok_or_else(|| DirectoryError::NotFound(format!("customer {customer_id}")))?;
    let row: PlacementRow = sqlx::query_as(
        "UPDATE customers SET shard_id = $2, epoch = epoch + 1, updated_at = now()
         WHERE customer_id = $1 RETURNING customer_id, shard_id, epoch, state",
    )
    .bind(customer_id.as_uuid())
    .bind(shard_id.as_str())
    .fetch_one(&mut *conn)
    .await
    .on_constraint("customers_shard_id_fkey", |_| {
        DirectoryError::NotFound(format!("shard {shard_id}"))
    })?;
    if old != shard_id.as_str() {
        sqlx::query(
            "UPDATE shards SET customers = CASE WHEN id = $1 THEN GREATEST(customers - 1, 0)
             ELSE customers + 1 END, updated_at = now() WHERE id IN ($1, $2)",
        )
        .bind(&old)
        .bind(shard_id.as_str())
        .execute(&mut *conn)
        .await?;
    }
    row.try_into()
}

pub async fn insert_identifier(
    conn: &mut PgConnection,
    kind: IdentifierKind,
    value: &str,
    customer_id: CustomerId,
    hint: Option<&str>,
) -> Result<(), DirectoryError> {
    // Registering the same identifier for the same customer again is a
    // no-op (a completed sign-up's retry); for another customer a conflict.
    let owner: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO identifiers (kind, value, customer_id, hint) VALUES ($1, $2, $3, $4)
         ON CONFLICT (kind, value) DO UPDATE SET kind = identifiers.kind
         RETURNING customer_id",
    )
    .bind(kind.as_str())
    .bind(value)
    .bind(customer_id.as_uuid())
    .bind(hint)
    .fetch_optional(&mut *conn)
    .await?;
    if owner != Some(customer_id.as_uuid()) {
        return Err(DirectoryError::Conflict(format!(
            "{} identifier already registered",
            kind.as_str()
        )));
    }
    Ok(())
}

pub async fn delete_identifier(
    conn: &mut PgConnection,
    kind: IdentifierKind,
    value: &str,
) -> Result<(), DirectoryError> {
    sqlx::query("DELETE FROM identifiers WHERE kind = $1 AND value = $2")
        .bind(kind.as_str())
        .bind(value)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn identifiers_of(
    pool: &PgPool,
    customer_id: CustomerId,
) -> Result<Vec<IdentifierView>, DirectoryError> {
    let rows: Vec<IdentifierView> = sqlx::query_as(
        "SELECT kind, CASE WHEN kind = 'card' THEN NULL ELSE value END AS value, hint
         FROM identifiers WHERE customer_id = $1 ORDER BY kind, created_at",
    )
    .bind(customer_id.as_uuid())
    .fetch_all(pool)
    .await
    .map_err(DirectoryError::Unavailable)?;
    Ok(rows)
}
