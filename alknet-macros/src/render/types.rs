//! The request types, the protocol enum that carries them, and the response enum.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned as _;

use crate::ast::Shape;
use crate::model::Service;

pub fn render(service: &Service) -> TokenStream {
    let rt = &service.runtime;
    let vis = &service.vis;
    let protocol = &service.ident;
    let response = service.response_ident();
    let derives = super::wire_derives(rt);
    let service_docs = &service.docs;
    let protocol_attrs = &service.attrs;

    let requests = service.operations.iter().map(|op| {
        let docs = &op.docs;
        let ident = &op.variant;
        let body = match &op.shape {
            Shape::Wrapped(_) => return quote!(),
            Shape::Unit => quote!({}),
            Shape::Named(fields) => {
                let fields = fields.iter().map(|field| {
                    let documented = field.attrs.iter().any(|a| a.path().is_ident("doc"));
                    let allow = (!documented).then(|| quote!(#[allow(missing_docs)]));
                    let attrs = &field.attrs;
                    let name = &field.ident;
                    super::documented_as_written(
                        rt,
                        &field.ty,
                        |ty| quote!(#allow #(#attrs)* pub #name: #ty,),
                    )
                });
                quote!({ #(#fields)* })
            }
        };
        quote_spanned! {ident.span()=>
            #docs
            #[derive(Debug, Clone)]
            #derives
            #vis struct #ident #body
        }
    });

    let variants = service.operations.iter().map(|op| {
        let docs = &op.docs;
        let ident = &op.variant;
        let request = &op.request;
        quote!(#docs #ident(#request))
    });

    let response_variants = service.operations.iter().map(|op| {
        let ident = &op.variant;
        let output = super::checked(rt, &op.output);
        quote!(#ident(#output))
    });

    let operation_impls = service
        .operations
        .iter()
        .filter(|op| op.request_taken_by.is_none())
        .map(|op| {
            let variant = &op.variant;
            let request = &op.request;
            let output = &op.output;
            let output_type =
                super::documented_as_written(rt, output, |output| quote!(type Output = #output;));
            let index = op.index;
            let name = &op.name;
            let kind = if op.is_subscription() {
                quote!(StreamingOperation)
            } else {
                quote!(UnaryOperation)
            };
            quote_spanned! {request.span()=>
                impl #rt::Operation for #request {
                    type Protocol = #protocol;
                    #output_type
                    const INDEX: usize = #index;
                    const NAME: &'static str = #name;

                    #[allow(unreachable_patterns)]
                    fn output(response: #response) -> ::core::option::Option<#output> {
                        match response {
                            #response::#variant(output) => ::core::option::Option::Some(output),
                            _ => ::core::option::Option::None,
                        }
                    }
                }

                impl #rt::#kind for #request {}

                impl ::core::convert::From<#request> for #protocol {
                    fn from(request: #request) -> Self {
                        #protocol::#variant(request)
                    }
                }
            }
        });

    // Every type that travels, checked once more on its own: a wrapped request is named
    // as written elsewhere, since its impls are the user's. For the other types this is the
    // same error at the same span as where they are named, which rustc prints once.
    let wire_types = service.operations.iter().flat_map(|op| {
        let fields: Vec<&syn::Type> = match &op.shape {
            Shape::Named(fields) => fields.iter().map(|f| &f.ty).collect(),
            Shape::Wrapped(ty) => vec![ty],
            Shape::Unit => vec![],
        };
        let details = op.attrs.errors.iter().filter_map(|e| e.details.as_ref());
        fields
            .into_iter()
            .chain(std::iter::once(&op.output))
            .chain(details)
            .map(|ty| {
                let checked = super::checked(rt, ty);
                quote! {
                    const _: ::core::marker::PhantomData<#checked> = ::core::marker::PhantomData;
                }
            })
            .collect::<Vec<_>>()
    });

    let response_doc = format!(" The outputs of [`{protocol}`], one variant per operation.");
    quote! {
        // First, so that a type without `#[alk_type]` is reported before anything else.
        #(#wire_types)*

        #(#requests)*

        #service_docs
        #(#protocol_attrs)*
        #derives
        #[derive(Debug)]
        #vis enum #protocol {
            #(#variants,)*
        }

        #[doc = #response_doc]
        #[doc(hidden)]
        #[derive(Debug)]
        #vis enum #response {
            #(#[allow(missing_docs)] #response_variants,)*
        }

        #(#operation_impls)*
    }
}
