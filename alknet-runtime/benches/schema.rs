//! Schema export of 100 operations (10 services × 10) against the floor: serializing the
//! same specs as pretty JSON with `serde_json`.
//!
//! Run with `cargo bench -p alknet-runtime --bench schema`; the ratio and the absolute time
//! against the 1 s target are printed at the end.

use std::hint::black_box;

use alknet_runtime::__private::schema_of;
use alknet_runtime::prelude::*;
use alknet_runtime::{
    AccessControl, ErrorDef, OperationKind, OperationSpec, ServiceSpec, Visibility, schema,
};
use criterion::{Criterion, criterion_group};

mod support;

const GROUP: &str = "schema_export";

/// A postal address.
#[alk_type]
#[derive(Debug, Clone)]
pub struct Address {
    /// Street and number.
    pub street: String,
    /// City.
    pub city: String,
    /// Postal code, where there is one.
    pub zip: Option<String>,
}

/// A customer's plan.
#[alk_type]
#[derive(Debug, Clone)]
pub enum Tier {
    /// Pays nothing.
    Free,
    /// Pays monthly.
    Pro,
    /// Has a contract.
    Enterprise,
}

/// Someone who orders.
#[alk_type]
#[derive(Debug, Clone)]
pub struct Customer {
    /// Identifier.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// Where to deliver.
    pub addresses: Vec<Address>,
    /// Plan.
    pub tier: Tier,
}

/// One line of an order.
#[alk_type]
#[derive(Debug, Clone)]
pub struct Line {
    /// Stock keeping unit.
    pub sku: String,
    /// How many.
    pub qty: u32,
    /// Unit price in cents.
    pub price_cents: i64,
}

/// An order.
#[alk_type]
#[derive(Debug, Clone)]
pub struct Order {
    /// Identifier.
    pub id: u64,
    /// Who ordered.
    pub customer: Customer,
    /// What.
    pub lines: Vec<Line>,
    /// A note for the warehouse.
    pub note: Option<String>,
}

/// Ten services of ten operations each, with realistic nested schemas.
fn services() -> Vec<ServiceSpec> {
    let schemas = [
        schema_of::<Order>(),
        schema_of::<Customer>(),
        schema_of::<Vec<Line>>(),
        schema_of::<Address>(),
        schema_of::<String>(),
    ];
    (0..10)
        .map(|s| {
            let namespace = format!("service{s}");
            let operations = (0..10)
                .map(|o| {
                    let name = format!("operation{o}");
                    let mut access = AccessControl::default();
                    if o % 3 == 0 {
                        access.scopes.push(format!("{namespace}:admin"));
                    }
                    OperationSpec {
                        id: format!("{namespace}/{name}"),
                        namespace: namespace.clone(),
                        name,
                        kind: [
                            OperationKind::Query,
                            OperationKind::Mutation,
                            OperationKind::Subscription,
                        ][o % 3],
                        visibility: if o == 9 {
                            Visibility::Internal
                        } else {
                            Visibility::External
                        },
                        idempotent: o == 4,
                        description: format!("Operation {o} of service {s}."),
                        version: "1.0.0".into(),
                        access,
                        timeout: None,
                        input_schema: schemas[o % 5].clone(),
                        output_schema: schemas[(o + 1) % 5].clone(),
                        errors: vec![ErrorDef {
                            code: "NOT_THERE".into(),
                            http_status: 409,
                            description: "the thing is not there".into(),
                            schema: Some(schema_of::<Address>()),
                        }],
                    }
                })
                .collect();
            ServiceSpec {
                namespace,
                version: "1.0.0".into(),
                description: format!("Service {s}."),
                authority: None,
                calls: vec![],
                operations,
            }
        })
        .collect()
}

fn export(c: &mut Criterion) {
    let services = services();
    assert_eq!(
        services.iter().map(|s| s.operations.len()).sum::<usize>(),
        100
    );
    let mut group = c.benchmark_group(GROUP);
    group.bench_function("serde_json_pretty_specs", |b| {
        b.iter(|| black_box(serde_json::to_string_pretty(black_box(&services)).unwrap()))
    });
    group.bench_function("export_100_operations", |b| {
        b.iter(|| black_box(schema::export(black_box(&services))))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().output_directory(&support::output_directory());
    targets = export
}

fn main() {
    benches();
    Criterion::default().final_summary();
    // The target is absolute (below); the ratio to the floor is recorded to notice drift.
    support::report(
        GROUP,
        "export_100_operations",
        "serde_json_pretty_specs",
        None,
    );
    let services = services();
    let exported: usize = schema::export(&services).values().map(String::len).sum();
    let baseline = serde_json::to_string_pretty(&services).unwrap().len();
    println!("output {GROUP}: export writes {exported} bytes, the baseline {baseline} bytes");
    if let Some(export) = support::median_ns(GROUP, "export_100_operations") {
        let ms = export / 1e6;
        let verdict = if ms < 1000.0 { "meets" } else { "MISSES" };
        println!("absolute {GROUP}: export_100_operations {ms:.2} ms ({verdict} target < 1 s)");
    }
}
