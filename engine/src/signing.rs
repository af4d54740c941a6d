//! Standard Webhooks signatures (<https://www.standardwebhooks.com>), through the spec's own
//! reference library: `webhook-signature` is `v1,` and the base64 HMAC-SHA256, keyed by the
//! `whsec_` secret, of `{webhook-id}.{webhook-timestamp}.{body}`.
//!
//! Several secrets may be configured at once while one is rotated: outbound requests carry one
//! signature per secret (space-separated), and an inbound request passes when any secret
//! verifies it.

use http::HeaderMap;
use standardwebhooks::Webhook;

/// The prefix of Standard Webhooks secrets.
const SECRET_PREFIX: &str = "whsec_";

/// Checks a secret: `whsec_` followed by base64.
pub fn parse_secret(secret: &str) -> Result<Webhook, String> {
    use base64::Engine as _;
    let Some(encoded) = secret.strip_prefix(SECRET_PREFIX) else {
        return Err("a signing secret starts with `whsec_` (Standard Webhooks)".into());
    };
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| {
            format!("not a Standard Webhooks secret: after `whsec_` comes base64 ({e})")
        })?;
    let min = crate::config::MIN_SECRET_BYTES;
    if key.len() < min {
        return Err(format!(
            "the key is {} bytes; a signing key must be at least {min} (24 or more is usual)",
            key.len()
        ));
    }
    Webhook::new(secret).map_err(|e| format!("not a Standard Webhooks secret: {e}"))
}

/// The keys of some secrets; `None` when there are none.
fn keys<S: AsRef<str>>(secrets: &[S]) -> Result<Option<Vec<Webhook>>, String> {
    if secrets.is_empty() {
        return Ok(None);
    }
    secrets
        .iter()
        .map(|s| parse_secret(s.as_ref()))
        .collect::<Result<_, _>>()
        .map(Some)
}

/// Signs outbound requests with every configured secret.
pub struct Signer {
    keys: Vec<Webhook>,
}

impl Signer {
    /// A signer for these secrets; `None` when there are none.
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Result<Option<Signer>, String> {
        Ok(keys(secrets)?.map(|keys| Signer { keys }))
    }

    /// The `webhook-signature` value for a message: one `v1,...` per secret. Standard Webhooks
    /// signs text: a body that is not UTF-8 cannot be signed, and the error says so.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
        if std::str::from_utf8(body).is_err() {
            return Err(
                "the body is not UTF-8 text, and a Standard Webhooks signature signs text: a \
                 destination with `secrets` takes text bodies only"
                    .to_owned(),
            );
        }
        let signatures = self
            .keys
            .iter()
            .map(|key| key.sign(id, timestamp, body))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot sign the body: {e}"))?;
        Ok(signatures.join(" "))
    }
}

/// Checks inbound requests against the configured secrets.
pub struct Verifier {
    keys: Vec<Webhook>,
}

impl Verifier {
    /// A verifier for these secrets; `None` when there are none.
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Result<Option<Verifier>, String> {
        Ok(keys(secrets)?.map(|keys| Verifier { keys }))
    }

    /// Whether the request's `webhook-id`, `webhook-timestamp` (within five minutes of now) and
    /// `webhook-signature` headers sign `body` with one of the secrets. The error says why not.
    pub fn verify(&self, body: &[u8], headers: &HeaderMap) -> Result<(), String> {
        let mut last = None;
        for key in &self.keys {
            match key.verify(body, headers) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(|| "no secret".to_owned(), |e| e.to_string()))
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OTHER: &str = "whsec_dGhlIG90aGVyIHNlY3JldA==";

    fn headers(id: &str, at: i64, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", id.parse().unwrap());
        headers.insert("webhook-timestamp", at.to_string().parse().unwrap());
        headers.insert("webhook-signature", signature.parse().unwrap());
        headers
    }

    proptest! {
        /// What the engine signs, the verifier (for the same secret, among others) accepts;
        /// any change to the body, the id or the time, or another secret, is refused.
        #[test]
        fn a_signature_holds_for_exactly_what_was_signed(
            body in "\\PC{0,200}".prop_map(String::into_bytes),
            id in "msg_[A-Za-z0-9]{1,24}",
            skew in -200i64..200,
            flip in any::<prop::sample::Index>(),
        ) {
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64
                + skew;
            let signature = Signer::new(&[SECRET]).unwrap().unwrap().sign(&id, at, &body).unwrap();
            let verifier = Verifier::new(&[OTHER, SECRET]).unwrap().unwrap();
            prop_assert!(verifier.verify(&body, &headers(&id, at, &signature)).is_ok());
            if !body.is_empty() {
                let mut tampered = body.clone();
                tampered[flip.index(body.len())] ^= 1;
                prop_assert!(verifier.verify(&tampered, &headers(&id, at, &signature)).is_err());
            }
            // Bytes that are not text are refused with a reason, not signed wrongly.
            let mut binary = body.clone();
            binary.push(0xff);
            let refused = Signer::new(&[SECRET]).unwrap().unwrap().sign(&id, at, &binary);
            prop_assert!(refused.unwrap_err().contains("not UTF-8"));
            let other_id = format!("{id}x");
            prop_assert!(verifier.verify(&body, &headers(&other_id, at, &signature)).is_err());
            prop_assert!(verifier.verify(&body, &headers(&id, at + 1, &signature)).is_err());
            let stranger = Verifier::new(&[OTHER]).unwrap().unwrap();
            prop_assert!(stranger.verify(&body, &headers(&id, at, &signature)).is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification's test vectors.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_specifications_test_vector() {
        let signer = Signer::new(&[SECRET]).unwrap().unwrap();
        assert_eq!(signer.sign(ID, TIMESTAMP, BODY).unwrap(), SIGNATURE);
    }

    #[test]
    fn several_secrets_give_several_signatures() {
        let other = "whsec_dGhlIG90aGVyIHNlY3JldA==";
        let signer = Signer::new(&[SECRET, other]).unwrap().unwrap();
        let signature = signer.sign(ID, TIMESTAMP, BODY).unwrap();
        let parts: Vec<&str> = signature.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], SIGNATURE);
        assert!(parts[1].starts_with("v1,"));
        assert_ne!(parts[1], SIGNATURE);
    }

    #[test]
    fn secrets_must_be_standard_webhooks_secrets() {
        let refusal = |secret: &str| parse_secret(secret).err().expect("refused");
        assert!(refusal("hunter2").contains("whsec_"));
        assert!(refusal("whsec_!!!").contains("not a Standard Webhooks secret"));
        assert!(Signer::new::<&str>(&[]).unwrap().is_none());
    }
}
