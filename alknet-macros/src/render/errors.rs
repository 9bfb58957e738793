//! `EchoErrors`: one constructor per declared error code, taking the declared details type,
//! so a handler never builds a domain error's code or details by hand.

use proc_macro2::TokenStream;
use quote::quote;

use crate::check::is_error_code;
use crate::model::{Service, error_constructor_ident};

pub fn render(service: &Service) -> TokenStream {
    let declared: Vec<_> = service
        .declared_errors()
        .into_iter()
        .filter(|(_, error)| {
            error
                .code
                .as_ref()
                .is_some_and(|c| is_error_code(&c.value()))
        })
        .collect();
    if declared.is_empty() {
        return quote!();
    }
    let rt = &service.runtime;
    let vis = &service.vis;
    let protocol = &service.ident;
    let errors = service.errors_ident();
    let items = declared.iter().map(|(op, error)| {
        let code = error.code.as_ref().expect("filtered on the code");
        let constant = syn::Ident::new(&code.value(), code.span());
        let constructor = error_constructor_ident(code);
        let description = error
            .description
            .as_ref()
            .map(|d| d.value())
            .unwrap_or_default();
        let constant_doc = format!(" `{}`, the code of [`{errors}::{constructor}`].", code.value());
        let doc = format!(
            " `{}` ({}): {description}. First declared on [`{protocol}::{}`].",
            code.value(),
            error.status.as_ref().map(|s| s.to_string()).unwrap_or_default(),
            op.variant,
        );
        let (params, build) = match &error.details {
            Some(details) => {
                let checked = super::checked(rt, details);
                (
                    quote!(message: impl ::core::convert::Into<::std::string::String>, details: #details),
                    quote!(#rt::__private::domain_error::<#checked>(#code, message.into(), &details)),
                )
            }
            None => (
                quote!(message: impl ::core::convert::Into<::std::string::String>),
                quote!(#rt::CallError::new(#code, message)),
            ),
        };
        quote! {
            #[doc = #constant_doc]
            pub const #constant: &'static str = #code;

            #[doc = #doc]
            pub fn #constructor(#params) -> #rt::CallError {
                #build
            }
        }
    });
    let doc = format!(
        " The domain errors [`{protocol}`] declares, as `CallError`s: one constructor per code, \
         taking the declared details type, and the code as a constant to match on."
    );
    quote! {
        #[doc = #doc]
        #vis enum #errors {}

        impl #errors {
            #(#items)*
        }
    }
}
