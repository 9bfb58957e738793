//! The service declaration the runtime builds `OperationSpec`s from: names, kinds, access
//! control, declared errors, and a JSON Schema function for every type.

use proc_macro2::TokenStream;
use quote::quote;

use crate::attr::Kind;
use crate::check::parse_timeout_ms;
use crate::model::Service;

/// An expression of type `ServiceDecl`, usable in a `static`.
pub fn declaration(service: &Service) -> TokenStream {
    let rt = &service.runtime;
    let private = quote!(#rt::__private);
    let namespace = service.namespace();
    let version = service
        .version
        .as_ref()
        .map(|v| v.value())
        .unwrap_or_default();
    let description = service.docs.text.clone().unwrap_or_default();
    let calls = &service.calls;
    let authority = match &service.authority {
        Some(authority) => {
            let scopes = &authority.scopes;
            let resources = authority.resources.iter().map(|r| {
                let value = r.value();
                let (kind, action) = value.split_once(':').unwrap_or((&value, ""));
                quote!((#kind, &[#action]))
            });
            quote! {
                ::core::option::Option::Some(#private::AuthorityDecl {
                    scopes: &[#(#scopes),*],
                    resources: &[#(#resources),*],
                })
            }
        }
        None => quote!(::core::option::Option::None),
    };
    let operations = service.operations.iter().map(|op| {
        let attrs = &op.attrs;
        let name = &op.name;
        let description = op.docs.text.clone().unwrap_or_default();
        let kind = match op.kind {
            Kind::Query => quote!(Query),
            Kind::Mutation => quote!(Mutation),
            Kind::Subscription => quote!(Subscription),
        };
        let visibility = if attrs.internal {
            quote!(Internal)
        } else {
            quote!(External)
        };
        let idempotent = attrs.idempotent.is_some();
        let scopes = &attrs.scopes;
        let any_scopes = &attrs.any_scopes;
        let resource = match &attrs.resource {
            Some(r) => {
                let value = r.value();
                let (kind, action) = value.split_once(':').unwrap_or((&value, ""));
                quote!(::core::option::Option::Some((#kind, #action)))
            }
            None => quote!(::core::option::Option::None),
        };
        let timeout = match attrs
            .timeout
            .as_ref()
            .and_then(|t| parse_timeout_ms(&t.value()).ok())
        {
            Some(ms) => quote!(::core::option::Option::Some(#ms)),
            None => quote!(::core::option::Option::None),
        };
        let request = &op.request;
        let output = super::checked(rt, &op.output);
        // An error without a code is reported already; the rest render with what they have.
        let errors = attrs
            .errors
            .iter()
            .filter_map(|e| Some((e, e.code.as_ref()?)))
            .map(|(e, code)| {
                let status = e
                    .status
                    .as_ref()
                    .and_then(|s| s.base10_parse::<u16>().ok())
                    .unwrap_or(500);
                let description = e
                    .description
                    .as_ref()
                    .map(|d| d.value())
                    .unwrap_or_default();
                let details = match &e.details {
                    Some(ty) => {
                        let ty = super::checked(rt, ty);
                        quote!(::core::option::Option::Some(#private::schema_of::<#ty>))
                    }
                    None => quote!(::core::option::Option::None),
                };
                quote! {
                    #private::ErrorDecl {
                        code: #code,
                        http_status: #status,
                        description: #description,
                        details_schema: #details,
                    }
                }
            });
        quote! {
            #private::OperationDecl {
                name: #name,
                kind: #rt::OperationKind::#kind,
                visibility: #rt::Visibility::#visibility,
                idempotent: #idempotent,
                description: #description,
                scopes: &[#(#scopes),*],
                any_scopes: &[#(#any_scopes),*],
                resource: #resource,
                timeout_ms: #timeout,
                input_schema: #private::schema_of::<#request>,
                output_schema: #private::schema_of::<#output>,
                errors: &[#(#errors),*],
            }
        }
    });
    quote! {
        #private::ServiceDecl {
            namespace: #namespace,
            version: #version,
            description: #description,
            authority: #authority,
            calls: &[#(#calls),*],
            operations: &[#(#operations),*],
        }
    }
}
