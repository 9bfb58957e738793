//! What a service is, once its declaration is read: names resolved, defaults applied.

use heck::ToSnakeCase;
use proc_macro2::Span;
use quote::format_ident;

use crate::ast::{Container, Docs, Shape};
use crate::attr::{AuthorityAttrs, Kind, OperationAttrs, ServiceAttrs};
use crate::ctxt::Ctxt;

pub struct Service {
    pub ident: syn::Ident,
    pub vis: syn::Visibility,
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
                }
            })
            .collect();
        Service {
            runtime: attrs
                .crate_path
                .unwrap_or_else(|| syn::parse_quote!(::alknet_runtime)),
            attrs_incomplete: attrs.incomplete,
            ident: container.ident,
            vis: container.vis,
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

    pub fn namespace(&self) -> String {
        self.namespace
            .as_ref()
            .map(|n| n.value())
            .unwrap_or_default()
    }
}

impl Operation {
    pub fn is_subscription(&self) -> bool {
        self.kind == Kind::Subscription
    }
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
