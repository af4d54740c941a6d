//! URLs without what may be secret in them: the user and password, and the query's values
//! (`?api_key=...`). A configured URL is shown this way in the configuration's view, and a
//! destination's URL this way in every error that names it (attempts, dead letters, logs).

use reqwest::Url;

/// Replaces `url`'s user, password and query values with `***`.
pub fn mask(url: &mut Url) {
    if !url.username().is_empty() {
        let _ = url.set_username("***");
    }
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query().is_some() {
        let names: Vec<String> = url
            .query_pairs()
            .map(|(name, _)| name.into_owned())
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(names.iter().map(|name| (name.as_str(), "***")));
    }
}

/// `url` masked ([`mask`]), or `(not a URL)`.
pub fn masked_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            mask(&mut parsed);
            parsed.to_string()
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// A NATS server's address masked as [`masked_url`] masks a URL; an address without a scheme
/// (`host:4222`) is read as `nats://host:4222`.
pub fn masked_server(address: &str) -> String {
    if address.contains("://") {
        masked_url(address)
    } else {
        masked_url(&format!("nats://{address}"))
    }
}

#[cfg(test)]
mod tests {
    use super::{masked_server, masked_url};

    #[test]
    fn server_addresses_lose_their_credentials_with_or_without_a_scheme() {
        assert_eq!(
            masked_server("nats://app:pw@10.0.0.1:4222"),
            "nats://***:***@10.0.0.1:4222"
        );
        assert_eq!(masked_server("10.0.0.1:4222"), "nats://10.0.0.1:4222");
    }

    #[test]
    fn urls_lose_their_credentials_and_query_values() {
        assert_eq!(
            masked_url("https://bot:s3cret@api.example/rates?key=abc&v=1"),
            "https://***:***@api.example/rates?key=***&v=***"
        );
        assert_eq!(
            masked_url("https://token@api.example/rates"),
            "https://***@api.example/rates"
        );
        assert_eq!(
            masked_url("http://127.0.0.1:9000/hms"),
            "http://127.0.0.1:9000/hms"
        );
        assert_eq!(masked_url("not a url"), "(not a URL)");
    }
}
