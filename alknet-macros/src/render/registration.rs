//! Registration: the `Protocol` impl the runtime dispatches by, the `Dispatch` impl that
//! runs a handler in-process, and `local()`, the entry `OperationEnv` mounts.

use proc_macro2::TokenStream;
use quote::quote;

use crate::ast::Shape;
use crate::model::{Operation, Service};

pub fn render(service: &Service) -> TokenStream {
    let rt = &service.runtime;
    let private = quote!(#rt::__private);
    let protocol = &service.ident;
    let response = service.response_ident();
    let handler = service.handler_ident();
    let namespace = service.namespace();
    let declaration = super::schema::declaration(service);

    let index_arms = service.operations.iter().map(|op| {
        let variant = &op.variant;
        let index = op.index;
        quote!(#protocol::#variant(_) => #index)
    });
    let decode_arms = service.operations.iter().map(|op| {
        let variant = &op.variant;
        let index = op.index;
        let id = format!("{namespace}/{}", op.name);
        // A generated request is a struct, whose derive would also take a JSON array.
        let decode = match op.shape {
            Shape::Wrapped(_) => quote!(decode),
            Shape::Unit | Shape::Named(_) => quote!(decode_object),
        };
        quote!(#index => #private::#decode(#id, input).map(#protocol::#variant))
    });
    let encode_arms = service.operations.iter().map(|op| {
        let variant = &op.variant;
        quote!(#response::#variant(output) => #private::encode(output))
    });

    // Each arm boxes only its own operation's future; the other kind's arms answer with
    // a ready error that the runtime never asks for, since it checks the kind first.
    let arms = |unary: bool, body: &dyn Fn(&Operation) -> TokenStream| {
        service
            .operations
            .iter()
            .map(|op| {
                let variant = &op.variant;
                let id = format!("{namespace}/{}", op.name);
                // An operation whose method another one took (an error) has no method to call.
                if op.is_subscription() != unary && op.method_taken_by.is_none() {
                    let call = body(op);
                    quote!(#protocol::#variant(request) => {
                        let handler = ::std::sync::Arc::clone(&self.0);
                        ::std::boxed::Box::pin(async move { #call })
                    })
                } else {
                    quote!(#protocol::#variant(_) => #private::wrong_kind(#id))
                }
            })
            .collect::<Vec<_>>()
    };
    let call_arms = arms(true, &|op| {
        let (variant, method) = (&op.variant, &op.method);
        quote!(<H as #handler>::#method(&handler, &ctx, request).await.map(#response::#variant))
    });
    let call_json_arms = arms(true, &|op| {
        let method = &op.method;
        let output = super::checked(rt, &op.output);
        quote!(#private::encode::<#output>(<H as #handler>::#method(&handler, &ctx, request).await?))
    });
    let subscribe_arms = arms(false, &|op| {
        let (variant, method) = (&op.variant, &op.method);
        quote! {
            let items = <H as #handler>::#method(&handler, &ctx, request).await?;
            ::core::result::Result::Ok(#private::StreamExt::boxed(#private::StreamExt::map(
                items,
                |item| item.map(#response::#variant),
            )))
        }
    });

    let local_doc = format!(
        " Serve `{namespace}` in this process with `handler`; mount the result with \
         `OperationEnv::builder().local(...)`."
    );
    quote! {
        impl #rt::Protocol for #protocol {
            const NAMESPACE: &'static str = #namespace;
            type Response = #response;

            fn declaration() -> &'static #private::ServiceDecl {
                static DECLARATION: #private::ServiceDecl = #declaration;
                &DECLARATION
            }

            fn operation_index(&self) -> usize {
                match *self {
                    #(#index_arms,)*
                }
            }

            fn decode(
                index: usize,
                input: #private::Value,
            ) -> ::core::result::Result<Self, #rt::CallError> {
                match index {
                    #(#decode_arms,)*
                    _ => ::core::result::Result::Err(#rt::CallError::not_found(
                        ::std::format!("`{}` has no operation number {}", #namespace, index),
                    )),
                }
            }

            fn encode(
                response: #response,
            ) -> ::core::result::Result<#private::Value, #rt::CallError> {
                match response {
                    #(#encode_arms,)*
                }
            }
        }

        #[allow(unused_variables)]
        impl<H: #handler> #rt::Dispatch<#protocol> for #private::Local<H> {
            fn call(
                &self,
                ctx: #rt::OperationContext,
                request: #protocol,
            ) -> #private::BoxFuture<'static, ::core::result::Result<#response, #rt::CallError>> {
                match request {
                    #(#call_arms,)*
                }
            }

            fn call_json(
                &self,
                ctx: #rt::OperationContext,
                request: #protocol,
            ) -> #private::BoxFuture<'static, ::core::result::Result<#private::Value, #rt::CallError>> {
                match request {
                    #(#call_json_arms,)*
                }
            }

            fn subscribe(
                &self,
                ctx: #rt::OperationContext,
                request: #protocol,
            ) -> #private::BoxFuture<
                'static,
                ::core::result::Result<#rt::ResponseStream<#protocol>, #rt::CallError>,
            > {
                match request {
                    #(#subscribe_arms,)*
                }
            }
        }

        impl #protocol {
            #[doc = #local_doc]
            pub fn local<H: #handler>(handler: H) -> #rt::LocalService {
                #private::with_transports::<#protocol>(#rt::LocalService::new::<#protocol>(
                    #private::Local(::std::sync::Arc::new(handler)),
                ))
            }
        }
    }
}
