//! The protocol enum as written, split into what the other steps need.

use syn::spanned::Spanned;

use crate::attr::{self, OperationAttrs};
use crate::ctxt::Ctxt;

/// The annotated enum.
pub struct Container {
    pub ident: syn::Ident,
    pub vis: syn::Visibility,
    /// The enum has generics or a `where` clause (an error): nothing can be generated for it.
    pub generic: bool,
    pub docs: Docs,
    /// Attributes to keep on the generated protocol enum.
    pub attrs: Vec<syn::Attribute>,
    pub variants: Vec<Variant>,
}

/// One variant: one operation.
pub struct Variant {
    pub ident: syn::Ident,
    pub docs: Docs,
    pub attrs: OperationAttrs,
    pub shape: Shape,
}

/// How a variant carries its request.
pub enum Shape {
    /// `Op` or `Op {}`: a request with no fields.
    Unit,
    /// `Op { a: A, b: B }`: the macro generates a request struct with these fields.
    Named(Vec<syn::Field>),
    /// `Op(Request)`: the request type exists already.
    Wrapped(syn::Type),
}

/// A doc comment, its lines joined, and the span to blame when it is missing.
pub struct Docs {
    pub text: Option<String>,
    pub attrs: Vec<syn::Attribute>,
}

/// The doc comment as written; where there is none (an error the macro reports already),
/// an allowance, so a crate that denies `missing_docs` sees only that error.
impl quote::ToTokens for Docs {
    fn to_tokens(&self, tokens: &mut proc_macro2::TokenStream) {
        if self.attrs.is_empty() {
            tokens.extend(quote::quote!(#[allow(missing_docs)]));
        } else {
            tokens.extend(self.attrs.iter().map(quote::ToTokens::to_token_stream));
        }
    }
}

impl Docs {
    fn take(attrs: &mut Vec<syn::Attribute>) -> Docs {
        let (docs, rest): (Vec<_>, Vec<_>) =
            attrs.drain(..).partition(|a| a.path().is_ident("doc"));
        *attrs = rest;
        let lines: Vec<String> = docs
            .iter()
            .filter_map(|a| match &a.meta {
                syn::Meta::NameValue(syn::MetaNameValue {
                    value:
                        syn::Expr::Lit(syn::ExprLit {
                            lit: syn::Lit::Str(s),
                            ..
                        }),
                    ..
                }) => Some(s.value()),
                _ => None,
            })
            .collect();
        let text = lines
            .iter()
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_string();
        Docs {
            text: (!text.is_empty()).then_some(text),
            attrs: docs,
        }
    }
}

impl Container {
    pub fn from_enum(cx: &Ctxt, mut item: syn::ItemEnum) -> Container {
        const NOT_GENERIC: &str =
            "a service protocol cannot be generic: use concrete request, output and item types";
        if !item.generics.params.is_empty() {
            cx.error_spanned_by(&item.generics, NOT_GENERIC);
        } else if let Some(where_clause) = &item.generics.where_clause {
            cx.error_spanned_by(where_clause, NOT_GENERIC);
        }
        let generic = !item.generics.params.is_empty() || item.generics.where_clause.is_some();
        let docs = Docs::take(&mut item.attrs);
        for a in &item.attrs {
            if a.path().is_ident("derive") {
                cx.error_spanned_by(
                    a,
                    "remove this #[derive]: #[alk_service] derives what the protocol enum needs itself",
                );
            }
        }
        let variants = item
            .variants
            .into_iter()
            .map(|v| Variant::from_syn(cx, v))
            .collect();
        Container {
            ident: item.ident,
            vis: item.vis,
            generic,
            docs,
            attrs: item
                .attrs
                .into_iter()
                .filter(|a| !a.path().is_ident("derive"))
                .collect(),
            variants,
        }
    }
}

impl Variant {
    fn from_syn(cx: &Ctxt, mut variant: syn::Variant) -> Variant {
        let docs = Docs::take(&mut variant.attrs);
        let mut attrs = None;
        for a in &variant.attrs {
            if a.path().is_ident(attr::OPERATION) {
                if attrs.is_some() {
                    cx.error_spanned_by(
                        a,
                        "an operation takes one #[alk_operation(...)]; merge the two",
                    );
                } else {
                    attrs = Some(OperationAttrs::parse(cx, a));
                }
            } else {
                cx.error_spanned_by(
                    a,
                    "only doc comments and #[alk_operation(...)] go on an operation; put serde and schemars attributes on its fields",
                );
            }
        }
        if let Some((_, discriminant)) = &variant.discriminant {
            cx.error_spanned_by(
                discriminant,
                "an operation cannot have a discriminant; remove `= ...`",
            );
        }
        let shape = match variant.fields {
            syn::Fields::Unit => Shape::Unit,
            syn::Fields::Named(named) if named.named.is_empty() => Shape::Unit,
            syn::Fields::Named(named) => Shape::Named(named.named.into_iter().collect()),
            syn::Fields::Unnamed(unnamed) if unnamed.unnamed.len() == 1 => {
                Shape::Wrapped(unnamed.unnamed.into_iter().next().unwrap().ty)
            }
            syn::Fields::Unnamed(unnamed) => {
                cx.syn_error(syn::Error::new(
                    unnamed.span(),
                    "an operation's request is one type: use named fields `{ a: A, b: B }`, or wrap a single request type `(Request)`",
                ));
                Shape::Unit
            }
        };
        if attrs.is_none() {
            cx.error_spanned_by(
                &variant.ident,
                "mark the operation with #[alk_operation(...)], such as #[alk_operation(query, output = T)]",
            );
        }
        Variant {
            ident: variant.ident,
            docs,
            attrs: attrs.unwrap_or_default(),
            shape,
        }
    }
}
