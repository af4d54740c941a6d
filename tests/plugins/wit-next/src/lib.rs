//! A transformer built against `hms:sync@0.2.0`, a version of the WIT package this engine does
//! not load (a later, incompatible one): what `plugin check` and an upload must refuse, naming
//! both versions.

// wit-bindgen's export glue declares the component's ABI functions, which is unsafe code.
#![allow(unsafe_code)]

/// The bindings of the next WIT version's transformer world.
mod next {
    wit_bindgen::generate!({
        inline: "
            package hms:sync@0.2.0;

            interface transform {
                transform: func(payload: list<u8>) -> list<u8>;
            }

            world transformer {
                export transform;
            }
        ",
        world: "transformer",
    });
}

struct Next;

impl next::exports::hms::sync::transform::Guest for Next {
    fn transform(payload: Vec<u8>) -> Vec<u8> {
        payload
    }
}

next::export!(Next with_types_in next);
