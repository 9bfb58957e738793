//! The typed client: one method per operation, over any `OperationEnv`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::ast::Shape;
use crate::model::Service;

pub fn render(service: &Service) -> TokenStream {
    let rt = &service.runtime;
    let vis = &service.vis;
    let protocol = &service.ident;
    let client = service.client_ident();
    let doc = format!(
        " A typed client of [`{protocol}`]: calls go through an `OperationEnv`, whichever \
         path serves the namespace. Use `ctx.env()` inside a handler to make nested calls."
    );
    let methods = service.operations.iter().filter(|op| op.method_taken_by.is_none()).map(|op| {
        let docs = &op.docs;
        let method = &op.method;
        let variant = &op.variant;
        let output = &op.output;
        let (params, request) = match &op.shape {
            Shape::Wrapped(ty) => (quote!(request: #ty), quote!(request)),
            Shape::Unit => (quote!(), quote!(#variant {})),
            Shape::Named(fields) => {
                let names: Vec<_> = fields
                    .iter()
                    .enumerate()
                    .map(|(i, f)| f.ident.clone().unwrap_or_else(|| format_ident!("arg{i}")))
                    .collect();
                let types = fields.iter().map(|f| &f.ty);
                (quote!(#(#names: #types),*), quote!(#variant { #(#names),* }))
            }
        };
        if op.is_subscription() {
            quote! {
                #docs
                pub async fn #method(&self, #params) -> ::core::result::Result<#rt::ItemStream<#output>, #rt::CallError> {
                    self.env.stream(#request).await
                }
            }
        } else {
            quote! {
                #docs
                pub async fn #method(&self, #params) -> ::core::result::Result<#output, #rt::CallError> {
                    self.env.call(#request).await
                }
            }
        }
    });
    quote! {
        #[doc = #doc]
        #[derive(Clone, Debug)]
        #vis struct #client {
            env: #rt::OperationEnv,
        }

        impl #client {
            /// A client that calls through `env`.
            pub fn new(env: #rt::OperationEnv) -> Self {
                #client { env }
            }

            #(#methods)*
        }
    }
}
