//! What the irpc path can carry: postcard is not self-describing, so some serde features
//! and `serde_json::Value` cannot cross it. Each is refused where the macro can see it, with
//! the runtime's `Json` wrapper as the fix.

use quote::ToTokens;
use syn::visit::Visit;

use crate::ctxt::Ctxt;

const FIX: &str = "wrap the value in `alknet_runtime::Json<..>`, which travels as JSON text where the format cannot describe itself";

/// A field of a request or an `#[alk_type]`: its serde attributes and its type.
pub fn check_field(cx: &Ctxt, field: &syn::Field) {
    for (attr, meta) in serde_metas(&field.attrs) {
        match meta.as_str() {
            "flatten" => cx.error_spanned_by(
                attr,
                format!("`#[serde(flatten)]` cannot cross the irpc path (postcard has no field names); {FIX}"),
            ),
            "skip_serializing_if" => cx.error_spanned_by(
                attr,
                "`skip_serializing_if` breaks postcard, which reads fields by position; remove it (`#[serde(default)]` alone is fine)",
            ),
            _ => {}
        }
    }
    check_type(cx, &field.ty);
}

/// A type that travels: a field's, an output, an item, error details.
pub fn check_type(cx: &Ctxt, ty: &syn::Type) {
    let mut finder = ValueFinder(None);
    finder.visit_type(ty);
    if let Some(value) = finder.0 {
        cx.error_spanned_by(
            value,
            format!("`serde_json::Value` cannot cross the irpc path (postcard cannot read a value that does not say its type); {FIX}"),
        );
    }
}

/// The standard containers a type may travel in: a missing `#[alk_type]` is reported on the
/// type inside (`Task` in `Vec<Task>`), where it goes.
const CONTAINERS: [&str; 12] = [
    "Vec", "VecDeque", "Option", "Box", "Arc", "Rc", "HashMap", "BTreeMap", "HashSet", "BTreeSet",
    "Result", "Json",
];

/// The types inside `ty` that need `#[alk_type]` themselves: `ty`, or what its standard
/// containers, tuples, arrays and references hold.
pub fn leaf_types(ty: &mut syn::Type) -> Vec<&mut syn::Type> {
    if !holds_types(ty) {
        return vec![ty];
    }
    match ty {
        syn::Type::Tuple(tuple) => tuple.elems.iter_mut().flat_map(leaf_types).collect(),
        syn::Type::Array(array) => leaf_types(&mut array.elem),
        syn::Type::Slice(slice) => leaf_types(&mut slice.elem),
        syn::Type::Reference(reference) => leaf_types(&mut reference.elem),
        syn::Type::Paren(paren) => leaf_types(&mut paren.elem),
        syn::Type::Path(path) => match path.path.segments.last_mut().map(|s| &mut s.arguments) {
            Some(syn::PathArguments::AngleBracketed(args)) => args
                .args
                .iter_mut()
                .filter_map(|arg| match arg {
                    syn::GenericArgument::Type(ty) => Some(ty),
                    _ => None,
                })
                .flat_map(leaf_types)
                .collect(),
            _ => unreachable!("a container has type arguments"),
        },
        _ => unreachable!("only these hold types"),
    }
}

/// Whether `ty` is a tuple, array, slice, reference or standard container with a type
/// argument (`Vec<Task>`, not `Vec`): what [`leaf_types`] looks into.
fn holds_types(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Tuple(tuple) => !tuple.elems.is_empty(),
        syn::Type::Array(_)
        | syn::Type::Slice(_)
        | syn::Type::Reference(_)
        | syn::Type::Paren(_) => true,
        syn::Type::Path(path) if path.qself.is_none() => {
            path.path.segments.last().is_some_and(|last| {
                CONTAINERS.iter().any(|c| last.ident == c)
                    && matches!(&last.arguments, syn::PathArguments::AngleBracketed(args)
                        if args.args.iter().any(|arg| matches!(arg, syn::GenericArgument::Type(_))))
            })
        }
        _ => false,
    }
}

/// The attributes of an `#[alk_type]` item itself.
pub fn check_container(cx: &Ctxt, attrs: &[syn::Attribute]) {
    for (attr, meta) in serde_metas(attrs) {
        if meta == "untagged" {
            cx.error_spanned_by(
                attr,
                format!("an untagged enum cannot cross the irpc path (postcard cannot guess the variant); use a tagged enum, or {FIX}"),
            );
        }
    }
}

/// Every `#[serde(..)]` entry's name, with the attribute it came from.
fn serde_metas(attrs: &[syn::Attribute]) -> Vec<(&syn::Attribute, String)> {
    let mut found = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = attr.parse_nested_meta(|meta| {
            let name = meta.path.to_token_stream().to_string();
            if meta.input.peek(syn::Token![=]) {
                meta.value()?.parse::<syn::Expr>()?;
            } else if meta.input.peek(syn::token::Paren) {
                let _content;
                syn::parenthesized!(_content in meta.input);
            }
            found.push((attr, name));
            Ok(())
        });
    }
    found
}

/// Finds `serde_json::Value` (or a bare `Value`) anywhere in a type, `Json<..>` excepted.
struct ValueFinder<'a>(Option<&'a syn::TypePath>);

impl<'a> Visit<'a> for ValueFinder<'a> {
    fn visit_type_path(&mut self, path: &'a syn::TypePath) {
        if self.0.is_some() {
            return;
        }
        let segments: Vec<String> = path
            .path
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        match segments.last().map(String::as_str) {
            // Inside the wrapper anything goes.
            Some("Json") => {}
            Some("Value") if segments.len() == 1 || segments.iter().any(|s| s == "serde_json") => {
                self.0 = Some(path);
            }
            _ => syn::visit::visit_type_path(self, path),
        }
    }
}
