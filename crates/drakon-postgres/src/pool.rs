//! A small connection pool: a bounded number of connections, each with its own cache of prepared statements.
//!
//! A connection that goes back to the pool inside a transaction (its task was cancelled mid-write) or that the
//! server closed is dropped instead, so the next user never inherits half a transaction: closing the socket makes
//! the server roll it back.

use std::collections::HashMap;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use crate::tls::Target;

/// Prepared statements kept per connection. Statements are few and fixed except list queries, whose SQL follows
/// the filter; past this many the cache starts over rather than grow with every distinct filter.
const STATEMENT_CACHE: usize = 256;

/// Parameters as tokio-postgres takes them.
pub type Params<'a> = [&'a (dyn ToSql + Sync)];

/// One server connection and the statements prepared on it.
pub struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
    in_transaction: bool,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("statements", &self.statements.len())
            .field("in_transaction", &self.in_transaction)
            .finish()
    }
}

impl Conn {
    pub fn new(client: Client) -> Conn {
        Conn { client, statements: HashMap::new(), in_transaction: false }
    }

    /// Opens a connection whose messages a spawned task drives; notifications, if any, are dropped.
    pub async fn connect(target: &Target) -> Result<Conn, tokio_postgres::Error> {
        let (client, _notifications) = crate::tls::connect(target).await?;
        Ok(Conn::new(client))
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    async fn statement(&mut self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub async fn query(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        self.client.query(&statement, params).await
    }

    pub async fn query_one(&mut self, sql: &str, params: &Params<'_>) -> Result<Row, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        self.client.query_one(&statement, params).await
    }

    pub async fn query_opt(&mut self, sql: &str, params: &Params<'_>) -> Result<Option<Row>, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        self.client.query_opt(&statement, params).await
    }

    pub async fn execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        self.client.execute(&statement, params).await
    }

    /// Runs statements without parameters or results (DDL, `LISTEN`), unprepared.
    pub async fn batch(&mut self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.client.batch_execute(sql).await
    }

    /// `BEGIN` with the given options, e.g. `ISOLATION LEVEL REPEATABLE READ, READ ONLY`.
    pub async fn begin(&mut self, options: &str) -> Result<(), tokio_postgres::Error> {
        self.in_transaction = true;
        self.client.batch_execute(&format!("BEGIN {options}")).await
    }

    pub async fn commit(&mut self) -> Result<(), tokio_postgres::Error> {
        self.client.batch_execute("COMMIT").await?;
        self.in_transaction = false;
        Ok(())
    }

    /// Rolls back; if even that fails the connection stays marked and the pool drops it.
    pub async fn rollback(&mut self) {
        if self.client.batch_execute("ROLLBACK").await.is_ok() {
            self.in_transaction = false;
        }
    }
}

/// Up to `size` connections to one database, opened on demand.
pub struct Pool {
    target: Target,
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("available", &self.permits.available_permits()).finish()
    }
}

impl Pool {
    pub fn new(target: Target, size: usize) -> Pool {
        Pool { target, idle: Mutex::new(Vec::new()), permits: Semaphore::new(size) }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// A connection for the caller alone until the guard drops; waits while all of them are in use.
    pub async fn get(&self) -> Result<Pooled<'_>, tokio_postgres::Error> {
        // The semaphore is never closed, so acquiring fails only if it were.
        let permit = self.permits.acquire().await.expect("the pool's semaphore is never closed");
        loop {
            let conn = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match conn {
                Some(conn) if conn.is_closed() => continue,
                Some(conn) => return Ok(Pooled { conn: Some(conn), pool: self, _permit: permit }),
                None => break,
            }
        }
        let conn = Conn::connect(&self.target).await?;
        Ok(Pooled { conn: Some(conn), pool: self, _permit: permit })
    }
}

/// A connection lent by the [`Pool`].
#[derive(Debug)]
pub struct Pooled<'a> {
    conn: Option<Conn>,
    pool: &'a Pool,
    _permit: SemaphorePermit<'a>,
}

impl Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("present until drop")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("present until drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && !conn.in_transaction
            && !conn.is_closed()
        {
            self.pool.idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        }
    }
}
