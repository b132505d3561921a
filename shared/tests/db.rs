//! The Postgres error classifier against a real server: each SQLSTATE class
//! the crates map is provoked for real and classified as expected.

use cellbank_shared::db::{classify, ConstraintExt, PgFailure};
use cellbank_shared::testkit::fresh_database;

#[derive(Debug, PartialEq)]
enum Domain {
    Taken,
    Db(String),
}

impl From<sqlx::Error> for Domain {
    fn from(e: sqlx::Error) -> Self {
        Domain::Db(format!("{:?}", classify(&e)))
    }
}

#[tokio::test]
async fn classifies_real_postgres_failures() {
    let url = fresh_database("dbclassify").await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE parent (id int PRIMARY KEY, name text CONSTRAINT parent_name_key UNIQUE);
         CREATE TABLE child (id int PRIMARY KEY, parent int REFERENCES parent(id),
                             n int CHECK (n > 0), label varchar(3));
         INSERT INTO parent VALUES (1, 'a');",
    )
    .execute(&pool)
    .await
    .unwrap();
    let run = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query(sql).execute(&pool).await.map(|_| ()) }
    };

    let dup = run("INSERT INTO parent VALUES (2, 'a')").await.unwrap_err();
    assert_eq!(
        classify(&dup),
        PgFailure::UniqueViolation {
            constraint: Some("parent_name_key".into())
        }
    );
    assert!(!classify(&dup).is_permanent());
    let fk = run("INSERT INTO child VALUES (1, 99, 1, 'x')")
        .await
        .unwrap_err();
    assert!(matches!(
        classify(&fk),
        PgFailure::ForeignKeyViolation { .. }
    ));
    let check = run("INSERT INTO child VALUES (1, 1, -1, 'x')")
        .await
        .unwrap_err();
    assert!(matches!(classify(&check), PgFailure::OtherIntegrity { .. }));
    assert!(classify(&check).is_permanent());
    let data = run("INSERT INTO child VALUES (1, 1, 1, 'toolong')")
        .await
        .unwrap_err();
    assert_eq!(classify(&data), PgFailure::DataException);
    let other = run("SELECT * FROM no_such_table").await.unwrap_err();
    assert_eq!(classify(&other), PgFailure::Other);

    // on_constraint maps only the named constraint; the rest keep their class.
    let named: Result<(), Domain> = run("INSERT INTO parent VALUES (3, 'a')")
        .await
        .on_constraint("parent_name_key", |_| Domain::Taken);
    assert_eq!(named, Err(Domain::Taken));
    let pkey: Result<(), Domain> = run("INSERT INTO parent VALUES (1, 'b')")
        .await
        .on_constraint("parent_name_key", |_| Domain::Taken);
    assert!(matches!(pkey, Err(Domain::Db(d)) if d.contains("parent_pkey")));
}
