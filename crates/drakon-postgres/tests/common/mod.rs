//! The throwaway PostgreSQL server lives in the test kit, shared with the drakon integration tests.

pub use drakon_testkit::postgres::TestPg;
