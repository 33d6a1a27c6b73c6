//! Who a client is: signed tokens (JWTs) checked against the keys of `[auth]`.
//!
//! The algorithm is pinned by the key, never chosen by the token: an HS256 secret accepts HS256 only, an RSA public
//! key RS256/RS384/RS512, an Ed25519 key EdDSA. A token that names another algorithm (`none`, or HS256 "signed"
//! with the RSA public key) is refused before any signature is looked at. `exp` is required, `nbf` is checked, and
//! `iss` and `aud` when configured. Each refusal has its own code, so a client can tell "sign in again" from "this
//! token was never valid here".
//!
//! A token is given on the socket as the first request (`{"route": "drakon", "verb": "auth", "args": {"token":
//! …}}`, preferred: URLs end up in logs), as `?token=` on the upgrade, or as `Authorization: Bearer` on it.

use std::sync::Arc;

use base64::Engine as _;
use drakon_core::User;
use drakon_core::config::AuthConfig;
use drakon_protocol::ErrorCode;

pub use crate::app_login::AppLogin;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value as Json};

/// How many seconds a token's `exp` and `nbf` may be off, for clocks that differ a little.
const LEEWAY_SECS: u64 = 5;

pub use drakon_core::schema::SERVER_ROUTE;

/// How clients sign in: tokens checked against the configured keys, built-in users, the app's own login.
pub struct Identity {
    keys: Vec<(DecodingKey, Validation)>,
    roles_claim: String,
    info_claim: String,
    users: bool,
    app: Option<AppLogin>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algorithms: Vec<_> = self.keys.iter().flat_map(|(_, v)| v.algorithms.clone()).collect();
        f.debug_struct("Identity")
            .field("algorithms", &algorithms)
            .field("users", &self.users)
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: ErrorCode,
    pub message: String,
}

fn refused(code: ErrorCode, message: impl Into<String>) -> Refused {
    Refused { code, message: message.into() }
}

impl Identity {
    /// The keys of `[auth]`; the public key file is read here.
    pub fn from_config(auth: &AuthConfig) -> Result<Identity, String> {
        let mut keys = Vec::new();
        let validation = |algorithms: &[Algorithm]| {
            let mut v = Validation::new(algorithms[0]);
            v.algorithms = algorithms.to_vec();
            v.leeway = LEEWAY_SECS;
            v.validate_nbf = true;
            v.set_required_spec_claims(&["exp", "sub"]);
            match &auth.audience {
                Some(aud) => v.set_audience(&[aud]),
                None => v.validate_aud = false,
            }
            if let Some(iss) = &auth.issuer {
                v.set_issuer(&[iss]);
            }
            v
        };
        if let Some(secret) = &auth.jwt_secret {
            let key = DecodingKey::from_secret(secret.as_bytes()).map_err(|e| format!("jwt_secret: {e}"))?;
            keys.push((key, validation(&[Algorithm::HS256])));
        }
        if let Some(path) = &auth.jwt_public_key_file {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                keys.push((key, validation(&[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512])));
            } else if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
                keys.push((key, validation(&[Algorithm::EdDSA])));
            } else {
                return Err(format!("{} holds no RSA or Ed25519 public key in PEM form", path.display()));
            }
        }
        let app = match &auth.auth_url {
            Some(url) => Some(AppLogin::new(url, auth.auth_url_cache, auth.auth_url_timeout)?),
            None => None,
        };
        if keys.is_empty() && !auth.users && app.is_none() {
            return Err("[auth] needs a way to sign in: jwt_secret (HS256, or DRAKON_JWT_SECRET), \
                 jwt_public_key_file (RS256, EdDSA), users = true (built-in users) or auth_url (the app's login)"
                .into());
        }
        Ok(Identity {
            keys,
            roles_claim: auth.roles_claim.clone(),
            info_claim: auth.info_claim.clone(),
            users: auth.users,
            app,
        })
    }

    /// Whether clients may present tokens.
    pub fn takes_tokens(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Whether built-in users may log in (`users = true`).
    pub fn builtin_users(&self) -> bool {
        self.users
    }

    /// The app's own login, if `auth_url` is set.
    pub fn app_login(&self) -> Option<&AppLogin> {
        self.app.as_ref()
    }

    /// The user a token names, with when the token expires.
    pub fn verify(&self, token: &str) -> Result<Arc<User>, Refused> {
        if self.keys.is_empty() {
            return Err(refused(ErrorCode::PermissionDenied, "this server takes no tokens: set a key in [auth]"));
        }
        let algorithm = header_algorithm(token)?;
        let Some((key, validation)) = self.keys.iter().find(|(_, v)| v.algorithms.iter().any(|a| a == &algorithm))
        else {
            let accepted: Vec<String> =
                self.keys.iter().flat_map(|(_, v)| v.algorithms.iter().map(|a| format!("{a:?}"))).collect();
            return Err(refused(
                ErrorCode::TokenBadSignature,
                format!("the token is signed with {algorithm:?}; this server accepts {}", accepted.join(", ")),
            ));
        };
        let claims = jsonwebtoken::decode::<Map<String, Json>>(token, key, validation).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                refused(ErrorCode::TokenBadSignature, "the token's signature does not match this server's key")
            }
            ErrorKind::ExpiredSignature => refused(ErrorCode::TokenExpired, "the token has expired; get a fresh one"),
            ErrorKind::ImmatureSignature => refused(ErrorCode::TokenNotYetValid, "the token is not valid yet (nbf)"),
            ErrorKind::InvalidAudience => refused(ErrorCode::TokenRejected, "the token is for another audience (aud)"),
            ErrorKind::InvalidIssuer => refused(ErrorCode::TokenRejected, "the token is from another issuer (iss)"),
            ErrorKind::MissingRequiredClaim(claim) => {
                refused(ErrorCode::TokenRejected, format!("the token has no `{claim}` claim"))
            }
            _ => refused(ErrorCode::TokenMalformed, "the token is not a well-formed JWT"),
        })?;
        let claims = claims.claims;
        let id = match claims.get("sub") {
            Some(Json::String(s)) if !s.is_empty() => s.clone(),
            Some(Json::Number(n)) => n.to_string(),
            _ => return Err(refused(ErrorCode::TokenRejected, "the token's `sub` must be a non-empty string")),
        };
        let roles = match claims.get(&self.roles_claim) {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Array(roles)) if roles.iter().all(Json::is_string) => {
                roles.iter().filter_map(Json::as_str).map(str::to_owned).collect()
            }
            Some(_) => {
                let message = format!("the token's `{}` must be a list of strings", self.roles_claim);
                return Err(refused(ErrorCode::TokenRejected, message));
            }
        };
        let info = claims.get(&self.info_claim).cloned().unwrap_or(Json::Null);
        let expires = claims.get("exp").and_then(Json::as_u64);
        Ok(Arc::new(User { id, roles, info, expires }))
    }
}

/// The algorithm a token's header names; `alg: none` (an unsigned token) is refused here with its own code.
fn header_algorithm(token: &str) -> Result<Algorithm, Refused> {
    let malformed = || refused(ErrorCode::TokenMalformed, "the token is not a well-formed JWT");
    let header = token.split('.').next().ok_or_else(malformed)?;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).map_err(|_| malformed())?;
    let header: Map<String, Json> = serde_json::from_slice(&header).map_err(|_| malformed())?;
    match header.get("alg").and_then(Json::as_str) {
        Some(alg) if alg.eq_ignore_ascii_case("none") => {
            Err(refused(ErrorCode::TokenUnsigned, "the token is unsigned (alg: none); this server needs a signature"))
        }
        Some(alg) => alg.parse().map_err(|_| refused(ErrorCode::TokenBadSignature, format!("unknown algorithm {alg}"))),
        None => Err(malformed()),
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    const SECRET: &str = "a-test-secret-of-at-least-32-chars!!";

    /// `[auth]` with an HS256 secret or a public key file, and an audience.
    fn config(secret: Option<&str>, key_file: Option<std::path::PathBuf>, audience: Option<&str>) -> AuthConfig {
        AuthConfig {
            jwt_secret: secret.map(str::to_owned),
            jwt_public_key_file: key_file,
            audience: audience.map(str::to_owned),
            ..AuthConfig::default()
        }
    }

    fn identity(audience: Option<&str>) -> Identity {
        Identity::from_config(&config(Some(SECRET), None, audience)).expect("an identity")
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn token(claims: Json, secret: &str) -> String {
        let key = EncodingKey::from_secret(secret.as_bytes()).expect("a key");
        encode(&Header::default(), &claims, &key).expect("a token")
    }

    fn unsigned(claims: &Json) -> String {
        let b64 = |v: &Json| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(claims))
    }

    /// A key pair made by `openssl genpkey` (`-algorithm RSA` or `ed25519`) in `dir`: the private and public PEM.
    fn key_pair(dir: &std::path::Path, algorithm: &str) -> (Vec<u8>, std::path::PathBuf) {
        let (private, public) = (dir.join(format!("{algorithm}.pem")), dir.join(format!("{algorithm}.pub.pem")));
        let run = |args: &[&str]| {
            let status =
                std::process::Command::new("openssl").args(args).status().expect("openssl (apt install openssl)");
            assert!(status.success(), "openssl {args:?}");
        };
        run(&["genpkey", "-algorithm", algorithm, "-out", private.to_str().unwrap()]);
        run(&["pkey", "-in", private.to_str().unwrap(), "-pubout", "-out", public.to_str().unwrap()]);
        (std::fs::read(&private).unwrap(), public)
    }

    #[test]
    fn public_keys_accept_their_own_algorithm_and_refuse_the_confused_one() {
        let dir = tempfile::tempdir().unwrap();
        let claims = json!({"sub": "7", "exp": now() + 60});
        for (algorithm, alg) in [("RSA", Algorithm::RS256), ("ed25519", Algorithm::EdDSA)] {
            let (private, public) = key_pair(dir.path(), algorithm);
            let id = Identity::from_config(&config(None, Some(public.clone()), None)).expect("an identity");
            let key = match alg {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(&private),
                _ => EncodingKey::from_ed_pem(&private),
            }
            .expect("a signing key");
            let signed = encode(&Header::new(alg), &claims, &key).expect("a token");
            assert_eq!(id.verify(&signed).expect("accepted").id, "7", "{algorithm}");
            // HS256 keyed with the public key, which anyone has: algorithm confusion, refused before any signature.
            let confused = token(claims.clone(), std::str::from_utf8(&std::fs::read(&public).unwrap()).unwrap());
            assert_eq!(id.verify(&confused).unwrap_err().code, ErrorCode::TokenBadSignature, "{algorithm}");
        }
        let bad = dir.path().join("not-a-key.pem");
        std::fs::write(&bad, "hello").unwrap();
        let refused = Identity::from_config(&config(None, Some(bad), None)).unwrap_err();
        assert!(refused.contains("no RSA or Ed25519 public key"), "{refused}");
    }

    #[test]
    fn a_good_token_names_its_user_and_every_bad_one_has_its_own_code() {
        let id = identity(None);
        let good = json!({"sub": "7", "exp": now() + 60, "roles": ["staff"], "info": {"name": "Alice"}});
        let user = id.verify(&token(good.clone(), SECRET)).expect("accepted");
        assert_eq!(
            (user.id.as_str(), user.roles.clone(), user.info.clone()),
            ("7", vec!["staff".into()], json!({"name": "Alice"}))
        );
        assert_eq!(user.expires.map(|e| e as i64), good["exp"].as_i64());

        let table = [
            ("garbage".to_owned(), ErrorCode::TokenMalformed),
            (unsigned(&good), ErrorCode::TokenUnsigned),
            (token(good.clone(), "another-secret-of-at-least-32-chars!"), ErrorCode::TokenBadSignature),
            (token(json!({"sub": "7", "exp": now() - 60}), SECRET), ErrorCode::TokenExpired),
            (token(json!({"sub": "7", "exp": now() + 60, "nbf": now() + 60}), SECRET), ErrorCode::TokenNotYetValid),
            (token(json!({"sub": "7"}), SECRET), ErrorCode::TokenRejected),
            (token(json!({"exp": now() + 60}), SECRET), ErrorCode::TokenRejected),
            (token(json!({"sub": "7", "exp": now() + 60, "roles": "staff"}), SECRET), ErrorCode::TokenRejected),
        ];
        for (token, code) in table {
            assert_eq!(id.verify(&token).map(|_| ()).unwrap_err().code, code, "{token}");
        }
        let for_app = token(json!({"sub": "7", "exp": now() + 60, "aud": "app"}), SECRET);
        let for_other = token(json!({"sub": "7", "exp": now() + 60, "aud": "other"}), SECRET);
        assert!(identity(Some("app")).verify(&for_app).is_ok());
        assert_eq!(identity(Some("app")).verify(&for_other).unwrap_err().code, ErrorCode::TokenRejected);
    }
}
