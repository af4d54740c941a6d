//! Exports `hms:sync/transform@0.1.0` with the wrong signature.
#![allow(missing_docs, unsafe_code, unreachable_pub)]

wit_bindgen::generate!({ path: "wit", world: "transformer" });

struct WrongShape;

impl exports::hms::sync::transform::Guest for WrongShape {
    fn transform(payload: String) -> String {
        payload
    }
}

export!(WrongShape);
