//! Every rule a declaration must keep, checked on the model; each broken rule is one error
//! on the offending tokens, with a sentence that names the fix.

use std::collections::HashMap;

use quote::ToTokens;

use crate::ast::Shape;
use crate::attr::{ErrorAttrs, Kind};
use crate::ctxt::Ctxt;
use crate::model::{Operation, Service};
use crate::wire;

/// The runtime's protocol codes; a domain error may not reuse one.
const PROTOCOL_CODES: [&str; 10] = [
    "NOT_FOUND",
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "INVALID_INPUT",
    "INVALID_OPERATION_TYPE",
    "TIMEOUT",
    "ABORTED",
    "UNAVAILABLE",
    "RESOURCE_EXHAUSTED",
    "INTERNAL",
];

/// Namespaces the runtime serves itself.
const RESERVED_NAMESPACES: [&str; 1] = ["services"];

pub fn check(cx: &Ctxt, service: &Service) {
    check_service(cx, service);
    check_shared_codes(cx, service);
    let mut names: HashMap<&str, &Operation> = HashMap::new();
    for op in &service.operations {
        if let Some(first) = op.method_taken_by.map(|i| &service.operations[i]) {
            cx.error_spanned_by(
                &op.variant,
                format!(
                    "`{}` and `{}` both become the method `{}`; rename one variant",
                    first.variant, op.variant, op.method
                ),
            );
        }
        check_operation(cx, op);
        if let Some(first) = names.get(op.name.as_str()) {
            cx.syn_error(syn::Error::new(
                op.name_span,
                format!(
                    "two operations are named `{}` (the other is `{}`); rename one with `name = \"...\"`",
                    op.name, first.variant
                ),
            ));
        } else {
            names.insert(&op.name, op);
        }
        if let (Shape::Wrapped(ty), Some(first)) = (
            &op.shape,
            op.request_taken_by.map(|i| &service.operations[i]),
        ) {
            let key = ty.to_token_stream().to_string();
            let whose = match first.shape {
                Shape::Wrapped(_) => "already the request of",
                Shape::Unit | Shape::Named(_) => "the request type the macro generates for",
            };
            cx.error_spanned_by(
                ty,
                format!(
                    "`{key}` is {whose} `{}`; each operation needs its own request type",
                    first.variant
                ),
            );
        }
    }
}

/// A code means one thing across a service: its one constructor takes one details type.
fn check_shared_codes(cx: &Ctxt, service: &Service) {
    let details = |error: &ErrorAttrs| {
        error
            .details
            .as_ref()
            .map(|ty| ty.to_token_stream().to_string())
    };
    let declared = service.declared_errors();
    for op in &service.operations {
        for error in &op.attrs.errors {
            let Some(code) = error.code.as_ref().filter(|c| is_error_code(&c.value())) else {
                continue;
            };
            let Some(&(first_op, first)) = declared
                .iter()
                .find(|(_, e)| e.code.as_ref().is_some_and(|c| c.value() == code.value()))
            else {
                continue;
            };
            if std::ptr::eq(first, error) || details(first) == details(error) {
                continue;
            }
            let first_details = match details(first) {
                Some(ty) => format!("with details `{ty}`"),
                None => "without details".to_string(),
            };
            let blame: &dyn ToTokens = match &error.details {
                Some(ty) => ty,
                None => code,
            };
            cx.error_spanned_by(
                blame,
                format!(
                    "`{}` is declared on `{}` {first_details}; a code has one details type across a service (its constructor `{}::{}` takes it): declare the same details, or use another code",
                    code.value(),
                    first_op.variant,
                    service.errors_ident(),
                    crate::model::error_constructor_ident(code),
                ),
            );
        }
    }
}

fn check_service(cx: &Ctxt, service: &Service) {
    let ident = &service.ident;
    match &service.namespace {
        None if service.attrs_incomplete => {}
        None => cx.error_spanned_by(
            ident,
            "a service needs a namespace: add `namespace = \"...\"` to #[alk_service(...)]",
        ),
        Some(ns) => {
            let value = ns.value();
            if !is_namespace(&value) {
                cx.error_spanned_by(
                    ns,
                    format!("`{value}` is not a valid namespace: use lowercase letters, digits and `-`, starting with a letter (at most 63)"),
                );
            } else if RESERVED_NAMESPACES.contains(&value.as_str()) {
                cx.error_spanned_by(ns, format!("the namespace `{value}` is reserved for the runtime's own operations; choose another"));
            }
        }
    }
    match &service.version {
        None if service.attrs_incomplete => {}
        None => cx.error_spanned_by(
            ident,
            "a service needs a version: add `version = \"1.0.0\"` (semver) to #[alk_service(...)]",
        ),
        Some(version) => {
            if let Err(err) = semver::Version::parse(&version.value()) {
                cx.error_spanned_by(
                    version,
                    format!(
                        "`{}` is not a semantic version ({err}); write it like \"1.0.0\"",
                        version.value()
                    ),
                );
            }
        }
    }
    if service.docs.text.is_none() {
        cx.error_spanned_by(
            ident,
            "add a doc comment (`/// ...`) to the service: it becomes the service's description in the schemas",
        );
    }
    if service.operations.is_empty() {
        cx.error_spanned_by(
            ident,
            "a service needs at least one operation: add a variant",
        );
    }
    for call in &service.calls {
        let value = call.value();
        let valid = value
            .split_once('/')
            .is_some_and(|(ns, op)| is_namespace(ns) && (op == "*" || is_operation_name(op)));
        if !valid {
            cx.error_spanned_by(
                call,
                format!(
                    "`{value}` is not a call pattern: write `namespace/operation` or `namespace/*`"
                ),
            );
        }
    }
    if let Some(authority) = &service.authority {
        for scope in &authority.scopes {
            check_scope(cx, scope);
        }
        for resource in &authority.resources {
            check_resource(cx, resource, true);
        }
    }
}

/// An `#[alk_type]` item: everything in it must cross every path.
pub fn check_alk_type(cx: &Ctxt, item: &syn::DeriveInput) {
    wire::check_container(cx, &item.attrs);
    let fields: Vec<&syn::Field> = match &item.data {
        syn::Data::Struct(s) => s.fields.iter().collect(),
        syn::Data::Enum(e) => e.variants.iter().flat_map(|v| v.fields.iter()).collect(),
        syn::Data::Union(u) => {
            cx.error_spanned_by(
                u.union_token,
                "#[alk_type] goes on a struct or an enum, not a union",
            );
            return;
        }
    };
    for field in fields {
        wire::check_field(cx, field);
    }
}

fn check_operation(cx: &Ctxt, op: &Operation) {
    let attrs = &op.attrs;
    match &op.shape {
        Shape::Named(fields) => fields.iter().for_each(|field| wire::check_field(cx, field)),
        Shape::Wrapped(ty) => wire::check_type(cx, ty),
        Shape::Unit => {}
    }
    if let Some(ty) = attrs.output.as_ref().or(attrs.item.as_ref()) {
        wire::check_type(cx, ty);
    }
    for details in attrs.errors.iter().filter_map(|e| e.details.as_ref()) {
        wire::check_type(cx, details);
    }
    if op.docs.text.is_none() {
        cx.error_spanned_by(
            &op.variant,
            "add a doc comment (`/// ...`) to the operation: it becomes its description in MCP, OpenAPI and the schemas",
        );
    }
    if !is_operation_name(&op.name) {
        let fix = if attrs.name.is_some() {
            ""
        } else {
            "; rename the variant, or set `name = \"...\"` in #[alk_operation(...)]"
        };
        cx.syn_error(syn::Error::new(
            op.name_span,
            format!("`{}` is not a valid operation name: use lowercase letters, digits and `_`, starting with a letter (at most 63){fix}", op.name),
        ));
    }
    match op.kind {
        Kind::Subscription => {
            if let Some(idempotent) = &attrs.idempotent {
                cx.error_spanned_by(
                    idempotent,
                    "`idempotent` marks a mutation that may be repeated safely; remove it from the subscription",
                );
            }
            if let Some(output) = &attrs.output {
                cx.error_spanned_by(
                    output,
                    "a subscription streams items: write `item = T` instead of `output = T`",
                );
            } else if attrs.item.is_none() && !attrs.incomplete {
                cx.error_spanned_by(
                    &op.variant,
                    "a subscription needs the type of its items: add `item = T` to #[alk_operation(...)]",
                );
            }
        }
        Kind::Query | Kind::Mutation => {
            if let Some(idempotent) = &attrs.idempotent
                && op.kind == Kind::Query
            {
                cx.error_spanned_by(
                    idempotent,
                    "a query changes nothing, so it is idempotent already; `idempotent` marks a mutation that may be repeated safely",
                );
            }
            if let Some(item) = &attrs.item {
                cx.error_spanned_by(
                    item,
                    "only subscriptions have items: write `output = T`, or make the operation a `subscription`",
                );
            }
        }
    }
    for scope in attrs.scopes.iter().chain(&attrs.any_scopes) {
        check_scope(cx, scope);
    }
    if let Some(resource) = &attrs.resource {
        check_resource(cx, resource, false);
    }
    if let Some(timeout) = &attrs.timeout
        && let Err(message) = parse_timeout_ms(&timeout.value())
    {
        cx.error_spanned_by(timeout, message);
    }
    let mut codes: HashMap<String, ()> = HashMap::new();
    for error in &attrs.errors {
        check_error(cx, error);
        if let Some(code) = &error.code
            && codes.insert(code.value(), ()).is_some()
        {
            cx.error_spanned_by(
                code,
                format!(
                    "the error code `{}` is declared twice; keep one",
                    code.value()
                ),
            );
        }
    }
}

fn check_error(cx: &Ctxt, error: &ErrorAttrs) {
    let missing = |key: &str, example: &str| {
        cx.syn_error(syn::Error::new(
            error.span,
            format!("a declared error needs `{key}`: add `{key} = {example}` to error(...)"),
        ))
    };
    match &error.code {
        None => missing("code", "\"NAME_TAKEN\""),
        Some(code) => {
            let value = code.value();
            if PROTOCOL_CODES.contains(&value.as_str()) {
                cx.error_spanned_by(
                    code,
                    format!("`{value}` is a protocol error code that the runtime produces; give the domain error its own code"),
                );
            } else if !is_error_code(&value) {
                cx.error_spanned_by(
                    code,
                    format!("`{value}` is not an error code: use SCREAMING_SNAKE_CASE, such as \"NAME_TAKEN\""),
                );
            }
        }
    }
    match &error.status {
        None => missing("status", "409"),
        Some(status) => match status.base10_parse::<u16>() {
            Ok(400..=599) => {}
            _ => cx.error_spanned_by(
                status,
                "an error's HTTP status is between 400 and 599, such as 409",
            ),
        },
    }
    if error.description.is_none() {
        missing("description", "\"when it happens\"");
    }
}

fn check_scope(cx: &Ctxt, scope: &syn::LitStr) {
    let value = scope.value();
    if value.is_empty() || value.chars().any(char::is_whitespace) {
        cx.error_spanned_by(scope, format!("`{value}` is not a scope: use a non-empty name without spaces, such as \"orders:read\""));
    }
}

fn check_resource(cx: &Ctxt, resource: &syn::LitStr, wildcards: bool) {
    let value = resource.value();
    if !wildcards && value.split(':').any(|part| part == "*") {
        cx.error_spanned_by(
            resource,
            "an operation's resource names one type and one action; `*` only goes in authority(resources = [...])",
        );
        return;
    }
    let valid = value.split_once(':').is_some_and(|(kind, action)| {
        let part = |p: &str| (wildcards && p == "*") || is_operation_name(p);
        part(kind) && part(action)
    });
    if !valid {
        cx.error_spanned_by(
            resource,
            format!("`{value}` is not a resource: write `type:action`, such as \"graph:read\""),
        );
    }
}

fn is_namespace(value: &str) -> bool {
    is_name(value, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
    })
}

pub(crate) fn is_operation_name(value: &str) -> bool {
    is_name(value, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
    })
}

fn is_name(value: &str, allowed: impl Fn(char) -> bool) -> bool {
    value.len() <= 63
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && value.chars().all(allowed)
}

pub(crate) fn is_error_code(value: &str) -> bool {
    value.starts_with(|c: char| c.is_ascii_uppercase())
        && value
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// `"250ms"`, `"5s"` or `"2m"` in milliseconds.
pub(crate) fn parse_timeout_ms(text: &str) -> Result<u64, String> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if n > 0 && scale > 0 => Ok(n * scale),
        _ => Err(format!(
            "`{text}` is not a timeout: write a positive whole number with `ms`, `s` or `m`, such as \"5s\""
        )),
    }
}
