//! Shared test services live in the test files; this crate only hosts the tests.
