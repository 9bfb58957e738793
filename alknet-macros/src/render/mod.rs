//! Writes the artifacts of a checked service, one module each.

mod client;
mod errors;
mod handler;
mod irpc;
mod registration;
mod schema;
mod types;

use proc_macro2::TokenStream;
use quote::quote;

use crate::model::Service;

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
