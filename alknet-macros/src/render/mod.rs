//! Writes the artifacts of a checked service, one module each.

mod client;
mod errors;
mod handler;
mod irpc;
mod registration;
mod schema;
mod types;

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};

use crate::model::Service;
use crate::wire;

pub fn service(service: &Service) -> TokenStream {
    let types = types::render(service);
    let handler = handler::render(service);
    let registration = registration::render(service);
    let client = client::render(service);
    let errors = errors::render(service);
    let irpc = irpc::render(service);
    quote! {
        #types
        #handler
        #registration
        #client
        #errors
        #irpc
    }
}

pub fn alk_type(runtime: &syn::Path, item: TokenStream) -> TokenStream {
    let derives = wire_derives(runtime);
    quote! {
        #derives
        #item
    }
}

/// The serde and schemars derives, reaching both crates through the runtime.
fn wire_derives(runtime: &syn::Path) -> TokenStream {
    let serde = serde_derives(runtime);
    let schemars = quote!(#runtime::schemars).to_string().replace(' ', "");
    quote! {
        #serde
        #[derive(#runtime::schemars::JsonSchema)]
        #[schemars(crate = #schemars)]
    }
}

/// The serde derives alone, reaching serde through the runtime.
fn serde_derives(runtime: &syn::Path) -> TokenStream {
    let serde = quote!(#runtime::serde).to_string().replace(' ', "");
    quote! {
        #[derive(#runtime::serde::Serialize, #runtime::serde::Deserialize)]
        #[serde(crate = #serde)]
    }
}

/// What `item` writes with `ty`, twice: as `ty` is written, for the docs, and with `ty`
/// [`checked`], for the compiler. For the public items that name a type that travels, so
/// that their docs do not show the check.
fn documented_as_written(
    rt: &syn::Path,
    ty: &syn::Type,
    item: impl Fn(&syn::Type) -> TokenStream,
) -> TokenStream {
    let written = item(ty);
    let checked = item(&checked(rt, ty));
    quote! {
        #[cfg(doc)]
        #written
        #[cfg(not(doc))]
        #checked
    }
}

/// `ty` as generated code names it where the compiler needs what `#[alk_type]` gives: each
/// type inside it that needs `#[alk_type]` ([`wire::leaf_types`]) named through
/// `__private::Checked`. The same type to the compiler; but a type without `#[alk_type]` is
/// one error, with the runtime's message and at the type as the declaration wrote it, not one
/// for each trait the code around it needs.
fn checked(rt: &syn::Path, ty: &syn::Type) -> syn::Type {
    let mut ty = ty.clone();
    for leaf in wire::leaf_types(&mut ty) {
        let tokens: Vec<_> = leaf.to_token_stream().into_iter().collect();
        let first = tokens.first().map_or_else(Span::call_site, |t| t.span());
        let last = tokens.last().map_or(first, |t| t.span());
        // The error is reported on the path of the proof, from `<` to `PROOF`: spanned so,
        // it covers the type as written.
        let open = quote_spanned!(first=> <);
        let proof = quote_spanned!(last=> PROOF);
        let named = quote_spanned! {first=>
            #open #leaf as #rt::__private::Checked<
                [(); #open #leaf as #rt::__private::AlkType>::#proof]
            >>::Type
        };
        *leaf = syn::parse2(named).expect("a qualified path is a type");
    }
    ty
}
