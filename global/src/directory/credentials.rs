//! Customers' stored credentials: the password hash kept per customer.

use sqlx::{PgConnection, PgPool};

use cellbank_shared::ids::CustomerId;

use super::DirectoryError;

pub async fn insert_credentials(
    conn: &mut PgConnection,
    customer_id: CustomerId,
    password_hash: &str,
) -> Result<(), DirectoryError> {
    sqlx::query("INSERT INTO credentials (customer_id, password_hash) VALUES ($1, $2)")
        .bind(customer_id.as_uuid())
        .bind(password_hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn password_hash(
    pool: &PgPool,
    customer_id: CustomerId,
) -> Result<Option<String>, DirectoryError> {
    sqlx::query_scalar("SELECT password_hash FROM credentials WHERE customer_id = $1")
        .bind(customer_id.as_uuid())
        .fetch_optional(pool)
        .await
        .map_err(DirectoryError::Unavailable)
}
