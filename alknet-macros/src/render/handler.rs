//! The handler trait: one `async fn` per operation.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned as _;

use crate::model::Service;

pub fn render(service: &Service) -> TokenStream {
    let rt = &service.runtime;
    let vis = &service.vis;
    let protocol = &service.ident;
    let handler = service.handler_ident();
    let doc = format!(
        " Serves [`{protocol}`]: one method per operation. Mount an implementation with \
         [`{protocol}::local`]."
    );
    let methods = service
        .operations
        .iter()
        .filter(|op| op.method_taken_by.is_none())
        .map(|op| {
            let docs = &op.docs;
            let method = &op.method;
            let request = &op.request;
            let output = &op.output;
            let returns = if op.is_subscription() {
                quote_spanned!(output.span()=> #rt::ItemStream<#output>)
            } else {
                quote!(#output)
            };
            quote! {
                #docs
                fn #method(
                    &self,
                    ctx: &#rt::OperationContext,
                    request: #request,
                ) -> impl ::core::future::Future<
                    Output = ::core::result::Result<#returns, #rt::CallError>,
                > + ::core::marker::Send;
            }
        });
    quote! {
        #[doc = #doc]
        #vis trait #handler: ::core::marker::Send + ::core::marker::Sync + 'static {
            #(#methods)*
        }
    }
}
