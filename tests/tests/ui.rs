//! The compile-time contract of `#[alk_service]` and `#[alk_type]`: declarations that must
//! compile (`ui/pass`) and mistakes that must fail with a message naming the fix (`ui/fail`).
//!
//! Regenerate the expected `.stderr` files with `TRYBUILD=overwrite`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
