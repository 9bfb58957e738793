//! The arguments of `#[alk_service(...)]` and `#[alk_operation(...)]`, as written.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;

use crate::ctxt::Ctxt;

pub const OPERATION: &str = "alk_operation";

/// The keys of each attribute, as the error for an unknown key lists them: the name, and
/// how it is written.
type Keys = [(&'static str, &'static str)];

const SERVICE_KEYS: &Keys = &[
    ("namespace", "`namespace`"),
    ("version", "`version`"),
    ("authority", "`authority(...)`"),
    ("calls", "`calls`"),
    ("crate", "`crate`"),
];
const OPERATION_KEYS: &Keys = &[
    ("query", "`query`"),
    ("mutation", "`mutation`"),
    ("subscription", "`subscription`"),
    ("output", "`output`"),
    ("item", "`item`"),
    ("name", "`name`"),
    ("scopes", "`scopes`"),
    ("any_scopes", "`any_scopes`"),
    ("resource", "`resource`"),
    ("internal", "`internal`"),
    ("idempotent", "`idempotent`"),
    ("error", "`error(...)`"),
    ("timeout", "`timeout`"),
];
const ERROR_KEYS: &Keys = &[
    ("code", "`code`"),
    ("status", "`status`"),
    ("details", "`details`"),
    ("description", "`description`"),
];
const AUTHORITY_KEYS: &Keys = &[("scopes", "`scopes`"), ("resources", "`resources`")];

#[derive(Default)]
pub struct ServiceAttrs {
    pub namespace: Option<syn::LitStr>,
    pub version: Option<syn::LitStr>,
    pub authority: Option<AuthorityAttrs>,
    pub calls: Vec<syn::LitStr>,
    pub crate_path: Option<syn::Path>,
    /// A syntax error stopped the parse: keys after it were not read.
    pub incomplete: bool,
}

#[derive(Default)]
pub struct AuthorityAttrs {
    pub scopes: Vec<syn::LitStr>,
    pub resources: Vec<syn::LitStr>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Query,
    Mutation,
    Subscription,
}

#[derive(Default)]
pub struct OperationAttrs {
    pub kind: Option<Kind>,
    pub output: Option<syn::Type>,
    pub item: Option<syn::Type>,
    pub name: Option<syn::LitStr>,
    pub scopes: Vec<syn::LitStr>,
    pub any_scopes: Vec<syn::LitStr>,
    pub resource: Option<syn::LitStr>,
    pub internal: bool,
    /// `idempotent`, where it was written.
    pub idempotent: Option<syn::Path>,
    pub errors: Vec<ErrorAttrs>,
    pub timeout: Option<syn::LitStr>,
    /// A syntax error stopped the parse: keys after it were not read.
    pub incomplete: bool,
}

pub struct ErrorAttrs {
    pub span: Span,
    pub code: Option<syn::LitStr>,
    pub status: Option<syn::LitInt>,
    pub details: Option<syn::Type>,
    pub description: Option<syn::LitStr>,
}

/// Store `value` in `slot`, reporting a second occurrence of `key`.
fn set_once<T>(cx: &Ctxt, meta: &ParseNestedMeta, slot: &mut Option<T>, value: T) {
    if slot.is_some() {
        cx.error_spanned_by(
            &meta.path,
            format!("`{}` is given twice; keep one", path_name(&meta.path)),
        );
    } else {
        *slot = Some(value);
    }
}

fn path_name(path: &syn::Path) -> String {
    quote::quote!(#path).to_string().replace(' ', "")
}

/// Report an unknown key and step over its value, so the keys after it are still read.
fn unknown(cx: &Ctxt, meta: &ParseNestedMeta, known: &Keys) -> syn::Result<()> {
    let name = path_name(&meta.path);
    cx.error_spanned_by(&meta.path, unknown_key_message(&name, known));
    if meta.input.peek(syn::Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _value;
        syn::parenthesized!(_value in meta.input);
    }
    Ok(())
}

/// Suggest the known key closest to `name` (a typo, a singular for a plural), or list them all.
fn unknown_key_message(name: &str, known: &Keys) -> String {
    let closest = known
        .iter()
        .map(|(key, written)| (strsim::damerau_levenshtein(name, key), *written))
        .min_by_key(|(distance, _)| *distance);
    match closest {
        // A third of the name may be wrong: `scope`, `scops`, `timout`, not `foo` for `item`.
        Some((distance, written)) if distance <= (name.len() / 3).max(1) => {
            format!("unknown key `{name}`; did you mean {written}?")
        }
        _ => {
            let written: Vec<&str> = known.iter().map(|(_, written)| *written).collect();
            let (last, rest) = written.split_last().expect("every attribute has keys");
            format!(
                "unknown key `{name}`; the keys are {} and {last}",
                rest.join(", ")
            )
        }
    }
}

fn string_list(meta: &ParseNestedMeta) -> syn::Result<Vec<syn::LitStr>> {
    let array: syn::ExprArray = meta.value()?.parse()?;
    array
        .elems
        .iter()
        .map(|e| match e {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Ok(s.clone()),
            other => Err(syn::Error::new_spanned(
                other,
                "expected a string literal, such as \"orders:read\"",
            )),
        })
        .collect()
}

/// The argument of `#[alk_type(...)]`: the runtime's path, `::alknet_runtime` by default.
pub fn alk_type_runtime(cx: &Ctxt, args: TokenStream) -> syn::Path {
    let default = syn::parse_quote!(::alknet_runtime);
    if args.is_empty() {
        return default;
    }
    match syn::parse2::<syn::LitStr>(args).and_then(|lit| lit.parse()) {
        Ok(path) => path,
        Err(err) => {
            cx.syn_error(syn::Error::new(
                err.span(),
                "#[alk_type] takes no arguments, or the runtime's path as a string, such as \"::alknet_runtime\"",
            ));
            default
        }
    }
}

impl ServiceAttrs {
    pub fn parse(cx: &Ctxt, args: TokenStream, _item: &syn::ItemEnum) -> ServiceAttrs {
        let mut attrs = ServiceAttrs::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("namespace") {
                let value = meta.value()?.parse()?;
                set_once(cx, &meta, &mut attrs.namespace, value);
            } else if meta.path.is_ident("version") {
                let value = meta.value()?.parse()?;
                set_once(cx, &meta, &mut attrs.version, value);
            } else if meta.path.is_ident("calls") {
                attrs.calls.extend(string_list(&meta)?);
            } else if meta.path.is_ident("crate") {
                let lit: syn::LitStr = meta.value()?.parse()?;
                match lit.parse::<syn::Path>() {
                    Ok(path) => set_once(cx, &meta, &mut attrs.crate_path, path),
                    Err(_) => cx.error_spanned_by(
                        &lit,
                        "`crate` takes the runtime's path as a string, such as \"::alknet_runtime\"",
                    ),
                }
            } else if meta.path.is_ident("authority") {
                let mut authority = AuthorityAttrs::default();
                meta.parse_nested_meta(|inner| {
                    if inner.path.is_ident("scopes") {
                        authority.scopes.extend(string_list(&inner)?);
                    } else if inner.path.is_ident("resources") {
                        authority.resources.extend(string_list(&inner)?);
                    } else {
                        unknown(cx, &inner, AUTHORITY_KEYS)?;
                    }
                    Ok(())
                })?;
                set_once(cx, &meta, &mut attrs.authority, authority);
            } else {
                unknown(cx, &meta, SERVICE_KEYS)?;
            }
            Ok(())
        });
        if let Err(err) = parser.parse2(args) {
            cx.syn_error(err);
            attrs.incomplete = true;
        }
        attrs
    }
}

impl OperationAttrs {
    pub fn parse(cx: &Ctxt, attr: &syn::Attribute) -> OperationAttrs {
        let mut attrs = OperationAttrs::default();
        if matches!(attr.meta, syn::Meta::Path(_)) {
            return attrs;
        }
        let result = attr.parse_nested_meta(|meta| {
            let kind = [
                ("query", Kind::Query),
                ("mutation", Kind::Mutation),
                ("subscription", Kind::Subscription),
            ]
            .into_iter()
            .find(|(name, _)| meta.path.is_ident(name));
            if let Some((_, kind)) = kind {
                if attrs.kind.is_some() {
                    cx.error_spanned_by(
                        &meta.path,
                        "an operation has one kind: keep one of `query`, `mutation` and `subscription`",
                    );
                } else {
                    attrs.kind = Some(kind);
                }
            } else if meta.path.is_ident("output") {
                let ty = meta.value()?.parse()?;
                set_once(cx, &meta, &mut attrs.output, ty);
            } else if meta.path.is_ident("item") {
                let ty = meta.value()?.parse()?;
                set_once(cx, &meta, &mut attrs.item, ty);
            } else if meta.path.is_ident("name") {
                let value = meta.value()?.parse()?;
                set_once(cx, &meta, &mut attrs.name, value);
            } else if meta.path.is_ident("scopes") {
                attrs.scopes.extend(string_list(&meta)?);
            } else if meta.path.is_ident("any_scopes") {
                attrs.any_scopes.extend(string_list(&meta)?);
            } else if meta.path.is_ident("resource") {
                let value = meta.value()?.parse()?;
                set_once(cx, &meta, &mut attrs.resource, value);
            } else if meta.path.is_ident("internal") {
                if attrs.internal {
                    cx.error_spanned_by(&meta.path, "`internal` is given twice; keep one");
                }
                attrs.internal = true;
            } else if meta.path.is_ident("idempotent") {
                set_once(cx, &meta, &mut attrs.idempotent, meta.path.clone());
            } else if meta.path.is_ident("timeout") {
                let value = meta.value()?.parse()?;
                set_once(cx, &meta, &mut attrs.timeout, value);
            } else if meta.path.is_ident("error") {
                attrs.errors.push(ErrorAttrs::parse(cx, &meta)?);
            } else {
                unknown(cx, &meta, OPERATION_KEYS)?;
            }
            Ok(())
        });
        if let Err(err) = result {
            cx.syn_error(err);
            attrs.incomplete = true;
        }
        attrs
    }
}

impl ErrorAttrs {
    fn parse(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<ErrorAttrs> {
        let mut error = ErrorAttrs {
            span: syn::spanned::Spanned::span(&meta.path),
            code: None,
            status: None,
            details: None,
            description: None,
        };
        meta.parse_nested_meta(|inner| {
            if inner.path.is_ident("code") {
                let value = inner.value()?.parse()?;
                set_once(cx, &inner, &mut error.code, value);
            } else if inner.path.is_ident("status") {
                let value = inner.value()?.parse()?;
                set_once(cx, &inner, &mut error.status, value);
            } else if inner.path.is_ident("details") {
                let value = inner.value()?.parse()?;
                set_once(cx, &inner, &mut error.details, value);
            } else if inner.path.is_ident("description") {
                let value = inner.value()?.parse()?;
                set_once(cx, &inner, &mut error.description, value);
            } else {
                unknown(cx, &inner, ERROR_KEYS)?;
            }
            Ok(())
        })?;
        Ok(error)
    }
}
