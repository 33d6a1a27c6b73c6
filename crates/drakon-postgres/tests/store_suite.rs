//! The store conformance suite (`drakon_testkit::store_suite`) against a real PostgreSQL server, through the
//! harness in `harness`.

mod harness;

drakon_testkit::store_suite!(harness::PgHarness::start());
