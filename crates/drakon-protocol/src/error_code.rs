//! The stable error codes sent in `data.code` of every `state:"error"` reply.
//!
//! SwampDragon closed the connection on most errors and sent free-form dicts for the rest; drakon instead answers
//! every error a client can cause with one of these codes, so clients can branch on a fixed set of strings. The
//! strings are part of the wire protocol: never rename one, only add new variants.

use std::fmt;

use serde::{Serialize, Serializer};

/// Why a request failed, as a client can branch on it.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The frame is not JSON, or not a JSON object.
    BadJson,
    /// The frame is larger than the server accepts.
    FrameTooLarge,
    /// The request has no `route`, or it is not a non-empty string.
    MissingRoute,
    /// The request has no `verb`, or it is not a non-empty string.
    MissingVerb,
    /// No route is registered under the requested name.
    UnknownRoute,
    /// The route has no verb of the requested name.
    UnknownVerb,
    /// The verb exists but the route does not allow it.
    VerbNotAllowed,
    /// `args`, `_page`, `callbackname` or a verb argument has the wrong shape.
    InvalidArgs,
    /// A filter lookup cannot be parsed or applied (bad operator, bad value for the operator).
    InvalidFilter,
    /// A filter or written field names a field the model does not have or does not expose.
    UnknownField,
    /// A value does not fit the type of its field.
    WrongType,
    /// The client tried to write a field outside the serializer's `update_fields`.
    ReadOnlyField,
    /// The object failed validation; `fields` says which fields and why.
    ValidationFailed,
    /// The requested object does not exist (or is not visible to this client).
    NotFound,
    /// The write would break a unique constraint or a restricting reference.
    Conflict,
    /// The requested page is past the last page.
    PageOutOfRange,
    /// The connection already holds as many subscriptions as the server allows.
    TooManySubscriptions,
    /// `unsubscribe` named a channel this connection is not subscribed to.
    NotSubscribed,
    /// A permission check refused the request.
    PermissionDenied,
    /// The client sent requests faster than the server allows.
    RateLimited,
    /// A dependency (store, bus) is temporarily unreachable; retrying later may succeed.
    Unavailable,
    /// The request (its body) did not arrive in time.
    RequestTimeout,
    /// A list the client sent is longer than the server allows (`_order`).
    LimitExceeded,
    /// The HTTP request itself is malformed (a broken chunked body, a head that frames its body two ways).
    BadRequest,
    /// The token is not a well-formed JWT.
    TokenMalformed,
    /// The token is unsigned (alg: none).
    TokenUnsigned,
    /// The token's signature or algorithm does not match the server's key.
    TokenBadSignature,
    /// The token has expired; the client should get a fresh one.
    TokenExpired,
    /// The token is not valid yet (its nbf is in the future).
    TokenNotYetValid,
    /// The token is signed but not for this server (iss, aud) or lacks a claim (sub, exp).
    TokenRejected,
    /// A login named no user, or the wrong password (which of the two is not said).
    BadCredentials,
    /// The app's login endpoint (`auth_url`) could not be asked or gave no usable answer.
    AuthUnavailable,
    /// A bug or unexpected failure in the server; the details are in the server log.
    Internal,
}

impl ErrorCode {
    /// Every code, in declaration order, for documentation and exhaustive tests.
    pub const ALL: &[ErrorCode] = &[
        ErrorCode::BadJson,
        ErrorCode::FrameTooLarge,
        ErrorCode::MissingRoute,
        ErrorCode::MissingVerb,
        ErrorCode::UnknownRoute,
        ErrorCode::UnknownVerb,
        ErrorCode::VerbNotAllowed,
        ErrorCode::InvalidArgs,
        ErrorCode::InvalidFilter,
        ErrorCode::UnknownField,
        ErrorCode::WrongType,
        ErrorCode::ReadOnlyField,
        ErrorCode::ValidationFailed,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::PageOutOfRange,
        ErrorCode::TooManySubscriptions,
        ErrorCode::NotSubscribed,
        ErrorCode::PermissionDenied,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::RequestTimeout,
        ErrorCode::LimitExceeded,
        ErrorCode::BadRequest,
        ErrorCode::TokenMalformed,
        ErrorCode::TokenUnsigned,
        ErrorCode::TokenBadSignature,
        ErrorCode::TokenExpired,
        ErrorCode::TokenNotYetValid,
        ErrorCode::TokenRejected,
        ErrorCode::BadCredentials,
        ErrorCode::AuthUnavailable,
        ErrorCode::Internal,
    ];

    /// The snake_case string sent on the wire; stable across releases.
    ///
    /// ```
    /// assert_eq!(drakon_protocol::ErrorCode::NotFound.as_str(), "not_found");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::MissingRoute => "missing_route",
            ErrorCode::MissingVerb => "missing_verb",
            ErrorCode::UnknownRoute => "unknown_route",
            ErrorCode::UnknownVerb => "unknown_verb",
            ErrorCode::VerbNotAllowed => "verb_not_allowed",
            ErrorCode::InvalidArgs => "invalid_args",
            ErrorCode::InvalidFilter => "invalid_filter",
            ErrorCode::UnknownField => "unknown_field",
            ErrorCode::WrongType => "wrong_type",
            ErrorCode::ReadOnlyField => "read_only_field",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PageOutOfRange => "page_out_of_range",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::TokenMalformed => "token_malformed",
            ErrorCode::TokenUnsigned => "token_unsigned",
            ErrorCode::TokenBadSignature => "token_bad_signature",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::TokenNotYetValid => "token_not_yet_valid",
            ErrorCode::TokenRejected => "token_rejected",
            ErrorCode::BadCredentials => "bad_credentials",
            ErrorCode::AuthUnavailable => "auth_unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// One sentence saying when the code is sent, for generated protocol docs.
    pub const fn description(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "The frame is not valid JSON or is not a JSON object.",
            ErrorCode::FrameTooLarge => "The frame is larger than the server's maximum frame size.",
            ErrorCode::MissingRoute => "The request has no route, or the route is not a non-empty string.",
            ErrorCode::MissingVerb => "The request has no verb, or the verb is not a non-empty string.",
            ErrorCode::UnknownRoute => "No route is registered under the requested name.",
            ErrorCode::UnknownVerb => "The route has no verb of the requested name.",
            ErrorCode::VerbNotAllowed => "The verb exists but this route does not allow it.",
            ErrorCode::InvalidArgs => "The args, _page, callbackname or a verb argument has the wrong shape.",
            ErrorCode::InvalidFilter => "A filter lookup cannot be parsed or applied.",
            ErrorCode::UnknownField => "A filter or write names a field the model does not expose.",
            ErrorCode::WrongType => "A value does not fit the type of its field.",
            ErrorCode::ReadOnlyField => "The request writes a field outside the route's update_fields.",
            ErrorCode::ValidationFailed => "The object failed validation; fields lists the messages per field.",
            ErrorCode::NotFound => "The requested object does not exist or is not visible to this client.",
            ErrorCode::Conflict => "The write would break a unique constraint or a restricting reference.",
            ErrorCode::PageOutOfRange => "The requested page is past the last page.",
            ErrorCode::TooManySubscriptions => "The connection already holds the maximum number of subscriptions.",
            ErrorCode::NotSubscribed => "The unsubscribe names a channel this connection is not subscribed to.",
            ErrorCode::PermissionDenied => "A permission check refused the request.",
            ErrorCode::RateLimited => "The client sent requests faster than the server allows.",
            ErrorCode::Unavailable => "A store or bus is temporarily unreachable; retrying later may succeed.",
            ErrorCode::RequestTimeout => "The request's body did not arrive in time.",
            ErrorCode::LimitExceeded => "A list in the request is longer than the server allows.",
            ErrorCode::BadRequest => "The HTTP request is malformed.",
            ErrorCode::TokenMalformed => "The token is not a well-formed JWT.",
            ErrorCode::TokenUnsigned => "The token is unsigned (alg: none).",
            ErrorCode::TokenBadSignature => "The token's signature or algorithm does not match the server's key.",
            ErrorCode::TokenExpired => "The token has expired; the client should get a fresh one.",
            ErrorCode::TokenNotYetValid => "The token is not valid yet (its nbf is in the future).",
            ErrorCode::TokenRejected => {
                "The token is signed but not for this server (iss, aud) or lacks a claim (sub, exp)."
            }
            ErrorCode::BadCredentials => "A login named no such user or the wrong password (which is not said).",
            ErrorCode::AuthUnavailable => "The app's login endpoint (auth_url) timed out or gave no usable answer.",
            ErrorCode::Internal => "The server failed unexpectedly; details are in the server log.",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_serialize_as_strings() {
        let mut seen = HashSet::new();
        for &code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{s} is not snake_case");
            assert_eq!(code.to_string(), s);
            assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{s}\""));
            assert!(code.description().ends_with('.'), "{s} description is not a sentence");
        }
        assert_eq!(seen.len(), 33);
    }

    #[test]
    fn wire_strings_are_stable() {
        // Clients branch on these strings; this table breaks loudly if one is renamed.
        let table = [
            (ErrorCode::BadJson, "bad_json"),
            (ErrorCode::FrameTooLarge, "frame_too_large"),
            (ErrorCode::MissingRoute, "missing_route"),
            (ErrorCode::MissingVerb, "missing_verb"),
            (ErrorCode::UnknownRoute, "unknown_route"),
            (ErrorCode::UnknownVerb, "unknown_verb"),
            (ErrorCode::VerbNotAllowed, "verb_not_allowed"),
            (ErrorCode::InvalidArgs, "invalid_args"),
            (ErrorCode::InvalidFilter, "invalid_filter"),
            (ErrorCode::UnknownField, "unknown_field"),
            (ErrorCode::WrongType, "wrong_type"),
            (ErrorCode::ReadOnlyField, "read_only_field"),
            (ErrorCode::ValidationFailed, "validation_failed"),
            (ErrorCode::NotFound, "not_found"),
            (ErrorCode::Conflict, "conflict"),
            (ErrorCode::PageOutOfRange, "page_out_of_range"),
            (ErrorCode::TooManySubscriptions, "too_many_subscriptions"),
            (ErrorCode::NotSubscribed, "not_subscribed"),
            (ErrorCode::PermissionDenied, "permission_denied"),
            (ErrorCode::RateLimited, "rate_limited"),
            (ErrorCode::Unavailable, "unavailable"),
            (ErrorCode::RequestTimeout, "request_timeout"),
            (ErrorCode::LimitExceeded, "limit_exceeded"),
            (ErrorCode::BadRequest, "bad_request"),
            (ErrorCode::TokenMalformed, "token_malformed"),
            (ErrorCode::TokenUnsigned, "token_unsigned"),
            (ErrorCode::TokenBadSignature, "token_bad_signature"),
            (ErrorCode::TokenExpired, "token_expired"),
            (ErrorCode::TokenNotYetValid, "token_not_yet_valid"),
            (ErrorCode::TokenRejected, "token_rejected"),
            (ErrorCode::BadCredentials, "bad_credentials"),
            (ErrorCode::AuthUnavailable, "auth_unavailable"),
            (ErrorCode::Internal, "internal"),
        ];
        assert_eq!(table.len(), ErrorCode::ALL.len());
        for (code, s) in table {
            assert_eq!(code.as_str(), s);
        }
    }
}
