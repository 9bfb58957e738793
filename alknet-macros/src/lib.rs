//! The `#[alk_service]` and `#[alk_type]` attribute macros of alknet.
//!
//! Use them through `alknet_runtime`, which re-exports them together with every crate the
//! generated code names. The macro works in four steps: [`ast`] and [`attr`] parse the
//! protocol enum, [`model`] turns it into what a service is, [`check`] finds every mistake
//! (all of them reported at once), and [`render`] writes one artifact per module.

mod ast;
mod attr;
mod check;
mod ctxt;
mod model;
mod render;
mod wire;

use proc_macro::TokenStream;

/// Declare a service: see the `alknet_runtime` crate documentation and `docs/guide.md`.
#[proc_macro_attribute]
pub fn alk_service(args: TokenStream, input: TokenStream) -> TokenStream {
    let cx = ctxt::Ctxt::default();
    let item = match syn::parse::<syn::ItemEnum>(input) {
        Ok(item) => item,
        Err(err) => {
            cx.syn_error(syn::Error::new(
                err.span(),
                "#[alk_service] goes on an enum with one variant per operation",
            ));
            return cx.into_compile_errors().into();
        }
    };
    let service_attrs = attr::ServiceAttrs::parse(&cx, args.into(), &item);
    let container = ast::Container::from_enum(&cx, item);
    let service = model::Service::new(&cx, service_attrs, container);
    check::check(&cx, &service);
    // What the declaration says is generated beside its errors, so code that names the
    // protocol, its handler or its client meets only the real errors.
    let generated = if service.generic {
        proc_macro2::TokenStream::new()
    } else {
        render::service(&service)
    };
    let errors = cx.into_compile_errors();
    quote::quote!(#errors #generated).into()
}

/// Derive `Serialize`, `Deserialize` and `JsonSchema` through `alknet_runtime`'s re-exports,
/// for outputs, items and error details in crates that depend on `alknet_runtime` alone.
#[proc_macro_attribute]
pub fn alk_type(args: TokenStream, input: TokenStream) -> TokenStream {
    let cx = ctxt::Ctxt::default();
    let derivable = match syn::parse::<syn::DeriveInput>(input.clone()) {
        Ok(item) => {
            check::check_alk_type(&cx, &item);
            !matches!(item.data, syn::Data::Union(_))
        }
        Err(err) => {
            cx.syn_error(syn::Error::new(
                err.span(),
                "#[alk_type] goes on a struct or an enum",
            ));
            false
        }
    };
    let runtime = attr::alk_type_runtime(&cx, args.into());
    // The item stays beside any error, so code that uses it meets only the real errors.
    let item = if derivable {
        render::alk_type(&runtime, input.into())
    } else {
        input.into()
    };
    let errors = cx.into_compile_errors();
    quote::quote!(#errors #item).into()
}
