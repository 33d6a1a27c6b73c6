//! The store conformance suite's harness for PostgreSQL: a throwaway server per test (from the test kit, shared
//! with the drakon integration tests), one database on it, nodes connecting to that database, and plain
//! tokio-postgres clients writing from outside drakon, as `psql` would.

use std::sync::Arc;

use async_trait::async_trait;
use drakon_core::store::{ChangeSink, LogRetention, Store};
use drakon_postgres::PgStore;
use drakon_testkit::postgres::TestPg;
use drakon_testkit::store_suite::{Outside, StoreHarness};
use tokio::sync::OnceCell;

/// The database every store and client of a harness uses.
const DATABASE: &str = "t";

#[derive(Debug)]
pub struct PgHarness {
    pg: TestPg,
    created: OnceCell<()>,
}

impl PgHarness {
    pub fn start() -> PgHarness {
        PgHarness { pg: TestPg::start(), created: OnceCell::new() }
    }

    /// The database's URL, creating it on first use. Its default collation is ICU English, not byte order, so
    /// nothing drakon compares or orders may depend on the database's collation.
    pub async fn url(&self) -> String {
        self.created
            .get_or_init(|| async {
                self.pg
                    .client("postgres")
                    .await
                    .batch_execute(&format!(
                        "CREATE DATABASE {DATABASE} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' \
                         LOCALE 'C'"
                    ))
                    .await
                    .expect("create a database whose default collation is not byte order");
                let db = self.pg.client(DATABASE).await;
                let english: bool = db.query_one("SELECT 'B' > 'a' COLLATE \"default\"", &[]).await.unwrap().get(0);
                assert!(english, "the database's own collation orders B after a");
            })
            .await;
        self.pg.url(DATABASE)
    }
}

#[async_trait]
impl StoreHarness for PgHarness {
    async fn open(&self, sink: ChangeSink, retention: LogRetention) -> Arc<dyn Store> {
        Arc::new(PgStore::connect(&self.url().await, sink, retention).await.expect("connect the store"))
    }

    async fn outside(&self) -> Box<dyn Outside> {
        self.url().await;
        Box::new(Psql(self.pg.client(DATABASE).await))
    }

    fn refused_creates_use_up_ids(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct Psql(tokio_postgres::Client);

#[async_trait]
impl Outside for Psql {
    async fn execute(&self, sql: &str) {
        self.0.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    async fn ints(&self, sql: &str) -> Vec<i64> {
        let rows = self.0.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        rows.iter().map(|r| r.get(0)).collect()
    }
}
