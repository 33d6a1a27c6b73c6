//! TLS to PostgreSQL: with `sslmode=require` every connection drakon opens (the pool's and the listener's) is
//! encrypted and checked against the CA named by `sslrootcert`; a server whose certificate no trusted CA signed is
//! refused with a clear error. Against a real PostgreSQL with `ssl = on` and a throwaway CA.

use std::time::Duration;

use drakon_core::store::{BusMessage, LogRetention, Store};
use drakon_postgres::PgStore;
use drakon_testkit::postgres::TestPg;
use drakon_testkit::store_suite::{create, text, todo_schema};
use tokio::sync::mpsc;

#[tokio::test]
async fn sslmode_require_encrypts_every_connection_and_verifies_the_server() {
    let pg = TestPg::start_with_tls();
    let url = pg.create_database("t").await;
    let tls_url = format!("{url}?sslmode=require&sslrootcert={}", pg.ca_file().display());
    let (tx, mut bus) = mpsc::channel(64);
    let store = PgStore::connect(&tls_url, tx, LogRetention::default()).await.expect("connect over TLS");
    store.migrate(&todo_schema()).await.unwrap();
    store.write(create("todo_list", vec![(1, text("over tls"))])).await.unwrap();
    // A write from outside reaches the bus: the listener's connection works over TLS too.
    let outside = pg.client("t").await;
    outside.batch_execute("INSERT INTO todo_list (name) VALUES ('from psql')").await.unwrap();
    let mut names = Vec::new();
    while names.len() < 2 {
        let msg = tokio::time::timeout(Duration::from_secs(10), bus.recv()).await.expect("changes arrive");
        if let Some(BusMessage::Changes(changes)) = msg {
            names.extend(changes.iter().map(|c| c.new.as_ref().unwrap()[1].clone()));
        }
    }
    assert_eq!(names, vec![text("over tls"), text("from psql")]);
    // Every connection drakon holds is encrypted.
    let row = outside
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity AS a JOIN pg_stat_ssl AS s USING (pid)
             WHERE a.application_name = 'drakon'",
            &[],
        )
        .await
        .unwrap();
    let (all, encrypted): (i64, i64) = (row.get(0), row.get(1));
    assert!(all >= 2, "the pool and the listener are connected: {all}");
    assert_eq!(encrypted, all, "every drakon connection uses TLS");
}

#[tokio::test]
async fn a_server_certificate_no_trusted_ca_signed_is_refused() {
    let pg = TestPg::start_with_tls();
    let url = pg.create_database("t").await;
    let (tx, _bus) = mpsc::channel(64);
    // Without sslrootcert the system's roots are used, and they did not sign the throwaway CA.
    let e = PgStore::connect(&format!("{url}?sslmode=require"), tx, LogRetention::default()).await.unwrap_err();
    let message = e.to_string();
    assert!(message.contains("over TLS") && message.to_lowercase().contains("certificate"), "{message}");
}
