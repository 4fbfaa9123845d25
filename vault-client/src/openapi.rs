//! `utoipa::ToSchema` for the wire types whose serde is written by hand: a [`Timestamp`]
//! (RFC 3339 in answers; RFC 3339 or Unix seconds in requests), and the token types whose
//! secret travels as `secret` or `secret_b64` (their schemas are those of the forms they are
//! read from). Every other wire type derives its schema (feature `openapi`).

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::{PartialSchema, ToSchema};

use crate::time::Timestamp;
use crate::wire::{Plaintext, PutToken, TransitSeal, TransitSealItem, UnsealTokenResponse};

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))),
            )
            .description(Some(
                "RFC 3339 in UTC in answers; RFC 3339 or seconds since the Unix epoch in requests",
            ))
            .into()
    }
}

impl ToSchema for Timestamp {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Timestamp")
    }
}

/// A type whose schema is that of the form it is read from.
macro_rules! schema_of_wire_form {
    ($ty:ty, $wire:ty, $name:literal) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                <$wire as PartialSchema>::schema()
            }
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }

            fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
                <$wire as ToSchema>::schemas(schemas);
            }
        }
    };
}

schema_of_wire_form!(PutToken, crate::wire::PutTokenWire, "PutToken");
schema_of_wire_form!(
    UnsealTokenResponse,
    crate::wire::UnsealTokenWire,
    "UnsealTokenResponse"
);
schema_of_wire_form!(
    TransitSealItem,
    crate::wire::TransitSealItemWire,
    "TransitSealItem"
);
schema_of_wire_form!(TransitSeal, crate::wire::TransitSealWire, "TransitSeal");
schema_of_wire_form!(Plaintext, crate::wire::PlaintextWire, "Plaintext");
