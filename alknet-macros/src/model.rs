//! What a service is, once its declaration is read: names resolved, defaults applied.

use std::collections::HashMap;

use heck::ToSnakeCase;
use proc_macro2::Span;
use quote::{ToTokens, format_ident};

use crate::ast::{Container, Docs, Shape};
use crate::attr::{AuthorityAttrs, ErrorAttrs, Kind, OperationAttrs, ServiceAttrs};
use crate::ctxt::Ctxt;

pub struct Service {
    pub ident: syn::Ident,
    pub vis: syn::Visibility,
    /// Generic (an error): nothing is generated.
    pub generic: bool,
    pub docs: Docs,
    pub attrs: Vec<syn::Attribute>,
    pub namespace: Option<syn::LitStr>,
    pub version: Option<syn::LitStr>,
    pub authority: Option<AuthorityAttrs>,
    pub calls: Vec<syn::LitStr>,
    /// The path generated code reaches the runtime by.
    pub runtime: syn::Path,
    /// The service attribute had a syntax error, so absent keys may just be unread.
    pub attrs_incomplete: bool,
    pub operations: Vec<Operation>,
}

pub struct Operation {
    pub variant: syn::Ident,
    pub docs: Docs,
    pub index: usize,
    /// The wire name: `name = "..."`, or the variant in snake_case.
    pub name: String,
    pub name_span: Span,
    /// The method on the handler trait and the client.
    pub method: syn::Ident,
    pub kind: Kind,
    pub shape: Shape,
    /// The request type: the generated struct, or the wrapped type.
    pub request: syn::Type,
    /// The output, or for a subscription the item; `()` when not given.
    pub output: syn::Type,
    pub attrs: OperationAttrs,
    /// Another operation (its index) has this operation's request type already: the
    /// generated struct of that name, or the same wrapped type (an error). The impls keyed
    /// by the request type are generated once, for the other.
    pub request_taken_by: Option<usize>,
    /// An earlier operation (its index) becomes the same method (an error): the handler
    /// and client keep that one.
    pub method_taken_by: Option<usize>,
}

impl Service {
    pub fn new(_cx: &Ctxt, attrs: ServiceAttrs, container: Container) -> Service {
        let operations = container
            .variants
            .into_iter()
            .enumerate()
            .map(|(index, variant)| {
                let kind = variant.attrs.kind.unwrap_or(Kind::Mutation);
                let name_span = variant
                    .attrs
                    .name
                    .as_ref()
                    .map_or(variant.ident.span(), |n| n.span());
                let snake = variant.ident.to_string().to_snake_case();
                let name = variant
                    .attrs
                    .name
                    .as_ref()
                    .map_or_else(|| snake.clone(), |n| n.value());
                let request = match &variant.shape {
                    Shape::Wrapped(ty) => ty.clone(),
                    Shape::Unit | Shape::Named(_) => {
                        let ident = &variant.ident;
                        syn::parse_quote!(#ident)
                    }
                };
                let output = match kind {
                    Kind::Subscription => variant.attrs.item.clone(),
                    Kind::Query | Kind::Mutation => variant.attrs.output.clone(),
                }
                .unwrap_or_else(|| syn::parse_quote!(()));
                Operation {
                    method: method_ident(&snake, variant.ident.span()),
                    variant: variant.ident,
                    docs: variant.docs,
                    index,
                    name,
                    name_span,
                    kind,
                    shape: variant.shape,
                    request,
                    output,
                    attrs: variant.attrs,
                    request_taken_by: None,
                    method_taken_by: None,
                }
            })
            .collect();
        let operations = mark_clashes(operations);
        Service {
            runtime: attrs
                .crate_path
                .unwrap_or_else(|| syn::parse_quote!(::alknet_runtime)),
            attrs_incomplete: attrs.incomplete,
            ident: container.ident,
            vis: container.vis,
            generic: container.generic,
            docs: container.docs,
            attrs: container.attrs,
            namespace: attrs.namespace,
            version: attrs.version,
            authority: attrs.authority,
            calls: attrs.calls,
            operations,
        }
    }

    /// `Auth` for `AuthProtocol`: the stem of the handler trait and client names.
    fn stem(&self) -> String {
        let name = self.ident.to_string();
        match name.strip_suffix("Protocol") {
            Some(stem) if !stem.is_empty() => stem.to_string(),
            _ => name,
        }
    }

    pub fn handler_ident(&self) -> syn::Ident {
        format_ident!("{}Handler", self.stem(), span = self.ident.span())
    }

    pub fn client_ident(&self) -> syn::Ident {
        format_ident!("{}Client", self.stem(), span = self.ident.span())
    }

    pub fn response_ident(&self) -> syn::Ident {
        format_ident!("{}Response", self.ident, span = self.ident.span())
    }

    /// `EchoErrors` for `EchoProtocol`: the constructors of the declared errors.
    pub fn errors_ident(&self) -> syn::Ident {
        format_ident!("{}Errors", self.stem(), span = self.ident.span())
    }

    /// Every declared error code once, in the order first declared, with the operation
    /// that declared it first. Operations that share a code share its constructor.
    pub fn declared_errors(&self) -> Vec<(&Operation, &ErrorAttrs)> {
        let mut seen = Vec::new();
        let mut declared = Vec::new();
        for op in &self.operations {
            for error in &op.attrs.errors {
                let Some(code) = &error.code else { continue };
                if !seen.contains(&code.value()) {
                    seen.push(code.value());
                    declared.push((op, error));
                }
            }
        }
        declared
    }

    pub fn namespace(&self) -> String {
        self.namespace
            .as_ref()
            .map(|n| n.value())
            .unwrap_or_default()
    }
}

/// Find the operations whose request type or method another operation has already.
fn mark_clashes(mut operations: Vec<Operation>) -> Vec<Operation> {
    let key = |ty: &syn::Type| ty.to_token_stream().to_string();
    // The request structs the macro generates, by name: a wrapped type that is one yields.
    let generated: HashMap<String, usize> = operations
        .iter()
        .filter(|op| !matches!(op.shape, Shape::Wrapped(_)))
        .map(|op| (op.variant.to_string(), op.index))
        .collect();
    let mut wrapped: HashMap<String, usize> = HashMap::new();
    let mut methods: HashMap<String, usize> = HashMap::new();
    for op in &mut operations {
        if let Shape::Wrapped(ty) = &op.shape {
            let ty = key(ty);
            op.request_taken_by = generated.get(&ty).or(wrapped.get(&ty)).copied();
            wrapped.entry(ty).or_insert(op.index);
        }
        op.method_taken_by = methods.get(&op.method.to_string()).copied();
        methods.entry(op.method.to_string()).or_insert(op.index);
    }
    operations
}

impl Operation {
    pub fn is_subscription(&self) -> bool {
        self.kind == Kind::Subscription
    }
}

/// The constructor of a declared error: `name_taken` for `NAME_TAKEN`.
pub fn error_constructor_ident(code: &syn::LitStr) -> syn::Ident {
    method_ident(&code.value().to_snake_case(), code.span())
}

/// The snake_case name as an identifier, raw where it is a keyword (`r#type`).
fn method_ident(snake: &str, span: Span) -> syn::Ident {
    match snake {
        // Keywords that cannot be raw identifiers.
        "self" | "super" | "crate" => format_ident!("{snake}_", span = span),
        // syn parses edition-2021 identifiers; `gen` is reserved from edition 2024 on.
        "gen" => syn::Ident::new_raw(snake, span),
        _ if syn::parse_str::<syn::Ident>(snake).is_err() => syn::Ident::new_raw(snake, span),
        _ => syn::Ident::new(snake, span),
    }
}
