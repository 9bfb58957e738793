use alknet_runtime::prelude::*;

/// Fetches pages.
#[alk_service(namespace = "pages", version = "1.0.0")]
pub enum PagesProtocol {
    /// Get a URL.
    #[alk_operation(query, output = String)]
    GetUrl { url: String },
    /// Get a URL, the other way.
    #[alk_operation(query, output = String, name = "fetch_url")]
    GetURL { url: String },
}

fn main() {}
