//! Who a client is: signed tokens (JWTs) checked against the keys of `[auth]`.
//!
//! The algorithm is pinned by the key, never chosen by the token: an HS256 secret accepts HS256 only, an RSA public
//! key RS256/RS384/RS512, an Ed25519 key EdDSA. A token that names another algorithm (`none`, or HS256 "signed"
//! with the RSA public key) is refused before any signature is looked at. `exp` is required, `nbf` is checked, and
//! `iss` and `aud` when configured. Each refusal has its own code, so a client can tell "sign in again" from "this
//! token was never valid here".
//!
//! A JWKS file (`jwks_file`) holds keys picked by the `kid` a token names: each key keeps its own algorithms (its
//! `alg`, or every algorithm of its type), so a token that names an RSA key cannot be checked as HS256 with it
//! either. A token without `kid` is checked against `jwt_secret` and `jwt_public_key_file` as before.
//!
//! A token is given on the socket as the first request (`{"route": "drakon", "verb": "auth", "args": {"token":
//! …}}`, preferred: URLs end up in logs), as `?token=` on the upgrade, or as `Authorization: Bearer` on it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use drakon_core::User;
use drakon_core::config::AuthConfig;
use drakon_protocol::ErrorCode;

pub use crate::app_login::AppLogin;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value as Json};

/// How many seconds a token's `exp` and `nbf` may be off, for clocks that differ a little.
const LEEWAY_SECS: u64 = 5;

/// What an RSA public key verifies. PS256 and friends are left out: the PEM key of `jwt_public_key_file` takes
/// these three, and a key set should not widen what an RSA key means.
const RSA_ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512];

/// What an Ed25519 public key verifies.
const ED25519_ALGORITHMS: [Algorithm; 1] = [Algorithm::EdDSA];

/// The smallest RSA modulus taken from a JWKS file, in bits: RFC 7518 §3.3 requires 2048 for RS256/384/512.
const MIN_RSA_BITS: usize = 2048;

/// The largest RSA modulus taken, in bits: the verifier (the `rsa` crate) refuses larger ones.
const MAX_RSA_BITS: usize = 8192;

/// The largest RSA public exponent taken: the verifier refuses larger ones, which make checking slow on purpose.
const MAX_RSA_EXPONENT: u64 = (1 << 33) - 1;

pub use drakon_core::schema::SERVER_ROUTE;

/// How clients sign in: tokens checked against the configured keys, built-in users, the app's own login.
pub struct Identity {
    /// `jwt_secret` and `jwt_public_key_file`: tried for tokens that name no `kid`, by algorithm.
    keys: Vec<(DecodingKey, Validation)>,
    /// The keys of `jwks_file` by `kid`, each with the algorithms it takes.
    jwks: BTreeMap<String, (DecodingKey, Validation)>,
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
            .field("jwks", &self.jwks.iter().map(|(kid, (_, v))| (kid, &v.algorithms)).collect::<Vec<_>>())
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
    /// The keys of `[auth]`; the public key file and the JWKS file are read here, so that a bad one stops the
    /// server at start rather than refusing every token later.
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
                keys.push((key, validation(&RSA_ALGORITHMS)));
            } else if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
                keys.push((key, validation(&ED25519_ALGORITHMS)));
            } else {
                return Err(format!("{} holds no RSA or Ed25519 public key in PEM form", path.display()));
            }
        }
        let mut jwks = BTreeMap::new();
        if let Some(path) = &auth.jwks_file {
            for (kid, key, algorithms) in read_jwks(path)? {
                jwks.insert(kid, (key, validation(&algorithms)));
            }
        }
        let app = match &auth.auth_url {
            Some(url) => Some(AppLogin::new(url, auth.auth_url_cache, auth.auth_url_timeout)?),
            None => None,
        };
        if keys.is_empty() && jwks.is_empty() && !auth.users && app.is_none() {
            return Err("[auth] needs a way to sign in: jwt_secret (HS256, or DRAKON_JWT_SECRET), \
                 jwt_public_key_file (RS256, EdDSA), jwks_file (keys picked by kid), users = true (built-in users) \
                 or auth_url (the app's login)"
                .into());
        }
        Ok(Identity {
            keys,
            jwks,
            roles_claim: auth.roles_claim.clone(),
            info_claim: auth.info_claim.clone(),
            users: auth.users,
            app,
        })
    }

    /// Whether clients may present tokens.
    pub fn takes_tokens(&self) -> bool {
        !self.keys.is_empty() || !self.jwks.is_empty()
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
        if !self.takes_tokens() {
            return Err(refused(ErrorCode::PermissionDenied, "this server takes no tokens: set a key in [auth]"));
        }
        let (algorithm, kid) = header_fields(token)?;
        let (key, validation) = match kid {
            // A token that names its key is checked with that key only: trying the others would let it pick,
            // by algorithm, a key its issuer never meant.
            Some(kid) if !self.jwks.is_empty() => {
                let Some((key, validation)) = self.jwks.get(&kid) else {
                    let message = format!("the token's key id (kid) {kid:?} is not in this server's key set");
                    return Err(refused(ErrorCode::TokenBadSignature, message));
                };
                if !validation.algorithms.contains(&algorithm) {
                    let message = format!(
                        "the token is signed with {algorithm:?}; key {kid:?} takes {}",
                        algorithm_list(&validation.algorithms)
                    );
                    return Err(refused(ErrorCode::TokenBadSignature, message));
                }
                (key, validation)
            }
            _ => {
                let found = self.keys.iter().find(|(_, v)| v.algorithms.contains(&algorithm));
                let Some((key, validation)) = found else {
                    let message = if self.keys.is_empty() {
                        "the token names no key (kid); this server's keys are picked by kid".to_owned()
                    } else {
                        let accepted: Vec<Algorithm> =
                            self.keys.iter().flat_map(|(_, v)| v.algorithms.iter().copied()).collect();
                        format!(
                            "the token is signed with {algorithm:?}; this server accepts {}",
                            algorithm_list(&accepted)
                        )
                    };
                    return Err(refused(ErrorCode::TokenBadSignature, message));
                };
                (key, validation)
            }
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

/// `RS256, RS384`: algorithms as a token's header spells them.
fn algorithm_list(algorithms: &[Algorithm]) -> String {
    algorithms.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ")
}

/// The algorithm a token's header names, and the key id (`kid`) if it names one; `alg: none` (an unsigned token)
/// is refused here with its own code.
fn header_fields(token: &str) -> Result<(Algorithm, Option<String>), Refused> {
    let malformed = || refused(ErrorCode::TokenMalformed, "the token is not a well-formed JWT");
    let header = token.split('.').next().ok_or_else(malformed)?;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).map_err(|_| malformed())?;
    let header: Map<String, Json> = serde_json::from_slice(&header).map_err(|_| malformed())?;
    let algorithm = match header.get("alg").and_then(Json::as_str) {
        Some(alg) if alg.eq_ignore_ascii_case("none") => {
            return Err(refused(
                ErrorCode::TokenUnsigned,
                "the token is unsigned (alg: none); this server needs a signature",
            ));
        }
        Some(alg) => {
            alg.parse().map_err(|_| refused(ErrorCode::TokenBadSignature, format!("unknown algorithm {alg}")))?
        }
        None => return Err(malformed()),
    };
    let kid = match header.get("kid") {
        None | Some(Json::Null) => None,
        Some(Json::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(malformed()),
    };
    Ok((algorithm, kid))
}

/// The usable keys of a JWKS file (RFC 7517): each with its `kid` and the algorithms it takes. Any key that drakon
/// cannot use is an error rather than skipped: a key silently left out would refuse every token it signs, long
/// after the server started and far from the cause.
fn read_jwks(path: &Path) -> Result<Vec<(String, DecodingKey, Vec<Algorithm>)>, String> {
    let file = path.display();
    let text = std::fs::read(path).map_err(|e| format!("cannot read {file}: {e}"))?;
    let shape = "a JWKS file holds {\"keys\": [...]} (RFC 7517)";
    let json: Json = serde_json::from_slice(&text).map_err(|e| format!("{file} is not JSON ({e}); {shape}"))?;
    let Some(raw_keys) = json.get("keys").and_then(Json::as_array) else {
        return Err(format!("{file} has no \"keys\" list; {shape}"));
    };
    let mut keys: Vec<(String, DecodingKey, Vec<Algorithm>)> = Vec::new();
    for (n, raw) in raw_keys.iter().enumerate() {
        // Each key is read on its own, not as one `JwkSet`, so that a problem can name the key it is about.
        let kid = match raw.get("kid") {
            Some(Json::String(kid)) if !kid.is_empty() => kid,
            None => {
                return Err(format!(
                    "{file}: key {} has no \"kid\"; give every key one, since tokens name their key by it",
                    n + 1
                ));
            }
            Some(_) => return Err(format!("{file}: key {}: \"kid\" must be a non-empty string", n + 1)),
        };
        if keys.iter().any(|(k, ..)| k == kid) {
            return Err(format!("{file}: two keys have kid {kid:?}; give each key its own"));
        }
        let (key, algorithms) = jwk_key(raw).map_err(|e| format!("{file}: key {kid:?}: {e}"))?;
        keys.push((kid.clone(), key, algorithms));
    }
    if keys.is_empty() {
        return Err(format!("{file} holds no keys; add the public keys your tokens are signed with"));
    }
    Ok(keys)
}

/// An RSA public key from its JWK `n` and `e`. The verifier's own checks are repeated here because it makes them
/// only when a token arrives, where a bad key could only show as "signature does not match".
fn rsa_key(n: &str, e: &str) -> Result<DecodingKey, String> {
    let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let bad = || "\"n\" and \"e\" must be base64url without padding (RFC 7518 §6.3.1)".to_owned();
    let n = engine.decode(n).map_err(|_| bad())?;
    let e = engine.decode(e).map_err(|_| bad())?;
    let bits = n.iter().position(|&b| b != 0).map_or(0, |i| (n.len() - i) * 8 - n[i].leading_zeros() as usize);
    if bits < MIN_RSA_BITS {
        return Err(format!("the RSA modulus has {bits} bits; RFC 7518 §3.3 requires at least {MIN_RSA_BITS}"));
    }
    if bits > MAX_RSA_BITS || n.last().is_none_or(|b| b % 2 == 0) {
        return Err(format!("\"n\" is not an RSA modulus drakon can use (an odd number of up to {MAX_RSA_BITS} bits)"));
    }
    let exponent =
        e.iter().skip_while(|&&b| b == 0).try_fold(0u64, |acc, &b| acc.checked_mul(256).map(|v| v | u64::from(b)));
    if !exponent.is_some_and(|e| e % 2 == 1 && (3..=MAX_RSA_EXPONENT).contains(&e)) {
        return Err("\"e\" must be an odd number from 3 to 2^33 - 1 (usually \"AQAB\", 65537)".into());
    }
    Ok(DecodingKey::from_rsa_raw_components(&n, &e))
}

/// One JWK as a verifying key with its algorithms: RSA (RS256, RS384, RS512) or OKP Ed25519 (EdDSA). The key's
/// `alg`, when given, narrows that to one; an `alg` of another key type is refused, never followed.
fn jwk_key(raw: &Json) -> Result<(DecodingKey, Vec<Algorithm>), String> {
    let supported = "drakon takes RSA keys (RS256, RS384, RS512) and OKP Ed25519 keys (EdDSA)";
    let field = |name: &str| raw.get(name).and_then(Json::as_str).unwrap_or("none").to_owned();
    let jwk: Jwk = serde_json::from_value(raw.clone()).map_err(|e| format!("not a valid JWK ({e})"))?;
    if let Some(usage) = &jwk.common.public_key_use
        && *usage != PublicKeyUse::Signature
    {
        return Err(format!("\"use\" is {:?}, not \"sig\": it is not a signing key; remove it", field("use")));
    }
    if let Some(operations) = &jwk.common.key_operations
        && !operations.contains(&KeyOperations::Verify)
    {
        return Err("its \"key_ops\" lack \"verify\": it is not for checking signatures; remove it".into());
    }
    let (key, family, kind) = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => (rsa_key(&rsa.n, &rsa.e)?, &RSA_ALGORITHMS[..], "RSA"),
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&okp.x);
            if !x.is_ok_and(|x| x.len() == 32) {
                return Err("\"x\" must be the 32-byte Ed25519 public key in base64url (RFC 8037 §2)".into());
            }
            let key = DecodingKey::from_ed_components(&okp.x).map_err(|e| format!("\"x\": {e}"))?;
            (key, &ED25519_ALGORITHMS[..], "Ed25519")
        }
        // What did not parse as a known key type: say what is missing when the type is one drakon takes.
        _ => {
            let (kty, crv) = (field("kty"), field("crv"));
            return Err(match (kty.as_str(), crv.as_str()) {
                ("RSA", _) => "an RSA key needs \"n\" and \"e\" (base64url strings)".to_owned(),
                ("OKP", "Ed25519") => "an Ed25519 key needs \"x\" (a base64url string)".to_owned(),
                ("OKP", crv) => format!("curve {crv} is not supported; {supported}"),
                (kty, _) => format!("key type (kty) {kty} is not supported; {supported}"),
            });
        }
    };
    let algorithms = match jwk.common.key_algorithm {
        None => family.to_vec(),
        Some(alg) => match Algorithm::try_from(alg) {
            Ok(alg) if family.contains(&alg) => vec![alg],
            _ => {
                return Err(format!(
                    "\"alg\" {} does not fit this {kind} key, which takes {}",
                    field("alg"),
                    algorithm_list(family)
                ));
            }
        },
    };
    Ok((key, algorithms))
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

    /// `[auth]` with a JWKS file, and an HS256 secret beside it when given.
    fn jwks_config(secret: Option<&str>, jwks: &std::path::Path) -> AuthConfig {
        AuthConfig { jwks_file: Some(jwks.to_owned()), ..config(secret, None, None) }
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn openssl(args: &[&str]) -> Vec<u8> {
        let out = std::process::Command::new("openssl").args(args).output().expect("openssl (apt install openssl)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// The JWK of an RSA public key file: `n` from `openssl rsa -modulus` (hex), `e` the 65537 that `openssl
    /// genpkey` uses.
    fn rsa_jwk(public: &std::path::Path, kid: &str) -> Json {
        let out = String::from_utf8(openssl(&["rsa", "-pubin", "-in", public.to_str().unwrap(), "-noout", "-modulus"]))
            .unwrap();
        let hex = out.trim().strip_prefix("Modulus=").expect("Modulus=…");
        let n: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        json!({"kty": "RSA", "kid": kid, "use": "sig", "n": b64(&n), "e": "AQAB"})
    }

    /// The JWK of an Ed25519 public key file: its DER form is a fixed 12-byte prefix and the raw 32-byte key.
    fn ed25519_jwk(public: &std::path::Path, kid: &str) -> Json {
        let der = openssl(&["pkey", "-pubin", "-in", public.to_str().unwrap(), "-outform", "DER"]);
        assert_eq!(der.len(), 44, "an Ed25519 public key in DER");
        json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(&der[12..])})
    }

    fn write_jwks(dir: &std::path::Path, keys: &[Json]) -> std::path::PathBuf {
        let path = dir.join("jwks.json");
        std::fs::write(&path, json!({ "keys": keys }).to_string()).unwrap();
        path
    }

    /// A token signed with `key` whose header names `alg` and, when given, `kid`.
    fn signed(claims: &Json, alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        encode(&header, claims, key).expect("a token")
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

    #[test]
    fn jwks_keys_are_picked_by_kid_and_keep_their_own_algorithms() {
        let dir = tempfile::tempdir().unwrap();
        let (rsa_dir, ed_a_dir, ed_b_dir) = (dir.path().join("rsa"), dir.path().join("ed-a"), dir.path().join("ed-b"));
        for d in [&rsa_dir, &ed_a_dir, &ed_b_dir] {
            std::fs::create_dir(d).unwrap();
        }
        let (rsa_private, rsa_public) = key_pair(&rsa_dir, "RSA");
        let (ed_a_private, ed_a_public) = key_pair(&ed_a_dir, "ed25519");
        let (ed_b_private, ed_b_public) = key_pair(&ed_b_dir, "ed25519");
        let mut rsa_384 = rsa_jwk(&rsa_public, "rsa-384");
        rsa_384["alg"] = json!("RS384");
        let mut ed_b = ed25519_jwk(&ed_b_public, "ed-b");
        ed_b["alg"] = json!("EdDSA");
        let jwks =
            write_jwks(dir.path(), &[rsa_jwk(&rsa_public, "rsa"), rsa_384, ed25519_jwk(&ed_a_public, "ed-a"), ed_b]);
        let id = Identity::from_config(&jwks_config(None, &jwks)).expect("an identity");
        assert!(id.takes_tokens());

        let rsa = EncodingKey::from_rsa_pem(&rsa_private).unwrap();
        let ed_a = EncodingKey::from_ed_pem(&ed_a_private).unwrap();
        let ed_b = EncodingKey::from_ed_pem(&ed_b_private).unwrap();
        let claims = json!({"sub": "7", "exp": now() + 60});
        for (token, who) in [
            (signed(&claims, Algorithm::RS256, Some("rsa"), &rsa), "RS256 with rsa"),
            (signed(&claims, Algorithm::RS512, Some("rsa"), &rsa), "RS512 with rsa: no alg, every RSA algorithm"),
            (signed(&claims, Algorithm::RS384, Some("rsa-384"), &rsa), "RS384 with rsa-384"),
            (signed(&claims, Algorithm::EdDSA, Some("ed-a"), &ed_a), "EdDSA with ed-a"),
            (signed(&claims, Algorithm::EdDSA, Some("ed-b"), &ed_b), "EdDSA with ed-b"),
        ] {
            assert_eq!(id.verify(&token).map(|u| u.id.clone()), Ok("7".to_owned()), "{who}");
        }

        let bad_signature = |token: &str, why: &str| {
            let refused = id.verify(token).unwrap_err();
            assert_eq!(refused.code, ErrorCode::TokenBadSignature, "{why}: {refused:?}");
            refused.message
        };
        let unknown = bad_signature(&signed(&claims, Algorithm::EdDSA, Some("nope"), &ed_a), "an unknown kid");
        assert!(unknown.contains("\"nope\" is not in this server's key set"), "{unknown}");
        bad_signature(&signed(&claims, Algorithm::EdDSA, Some("ed-b"), &ed_a), "signed by ed-a, naming ed-b");
        bad_signature(&signed(&claims, Algorithm::RS256, Some("ed-a"), &rsa), "RS256 naming an Ed25519 key");
        let pinned = bad_signature(&signed(&claims, Algorithm::RS256, Some("rsa-384"), &rsa), "RS256, key says RS384");
        assert!(pinned.contains("key \"rsa-384\" takes RS384"), "{pinned}");
        bad_signature(&signed(&claims, Algorithm::EdDSA, None, &ed_a), "no kid, and no key outside the set");
        // HS256 keyed with the RSA public key, which anyone has, naming the RSA key: refused before any signature.
        let public_pem = std::fs::read(&rsa_public).unwrap();
        let confused = signed(&claims, Algorithm::HS256, Some("rsa"), &EncodingKey::from_secret(&public_pem).unwrap());
        bad_signature(&confused, "algorithm confusion");

        // Every other refusal keeps its code when the key comes from the set.
        let expired = signed(&json!({"sub": "7", "exp": now() - 60}), Algorithm::EdDSA, Some("ed-a"), &ed_a);
        assert_eq!(id.verify(&expired).unwrap_err().code, ErrorCode::TokenExpired);
        let no_sub = signed(&json!({"exp": now() + 60}), Algorithm::EdDSA, Some("ed-a"), &ed_a);
        assert_eq!(id.verify(&no_sub).unwrap_err().code, ErrorCode::TokenRejected);
        let b64json = |v: &Json| b64(v.to_string().as_bytes());
        let none = format!("{}.{}.", b64json(&json!({"alg": "none", "kid": "rsa"})), b64json(&claims));
        assert_eq!(id.verify(&none).unwrap_err().code, ErrorCode::TokenUnsigned);

        // Beside a secret: tokens without kid still go to the secret; one that names a key goes to that key only.
        let id = Identity::from_config(&jwks_config(Some(SECRET), &jwks)).expect("an identity");
        assert!(id.verify(&token(claims.clone(), SECRET)).is_ok());
        let secret = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
        let named = id.verify(&signed(&claims, Algorithm::HS256, Some("rsa"), &secret)).unwrap_err();
        assert_eq!(named.code, ErrorCode::TokenBadSignature, "HS256 naming the RSA key: {named:?}");
        assert!(id.verify(&signed(&claims, Algorithm::EdDSA, Some("ed-a"), &ed_a)).is_ok());
    }

    #[test]
    fn bad_jwks_files_are_refused_at_load_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        // Made-up material that passes the shape checks: an odd 2048-bit modulus, 32 bytes for an Ed25519 key.
        let n = b64(&[0xff; 256]);
        let x = b64(&[7; 32]);
        let rsa = json!({"kty": "RSA", "kid": "r", "n": n, "e": "AQAB"});
        let with = |base: &Json, key: &str, value: Json| {
            let mut jwk = base.clone();
            jwk[key] = value;
            jwk
        };
        let ed = json!({"kty": "OKP", "crv": "Ed25519", "kid": "e", "x": x});
        let table: Vec<(String, &str)> = vec![
            ("garbage".into(), "is not JSON"),
            (json!({"key": []}).to_string(), "has no \"keys\" list"),
            (json!({"keys": []}).to_string(), "holds no keys"),
            (json!({"keys": [{"kty": "RSA", "n": n, "e": "AQAB"}]}).to_string(), "key 1 has no \"kid\""),
            (json!({"keys": [rsa, with(&rsa, "kid", json!(""))]}).to_string(), "key 2: \"kid\" must be a non-empty"),
            (json!({"keys": [rsa, rsa]}).to_string(), "two keys have kid \"r\""),
            (
                json!({"keys": [{"kty": "EC", "kid": "ec", "crv": "P-256", "x": x, "y": x}]}).to_string(),
                "key \"ec\": key type (kty) EC is not supported",
            ),
            (json!({"keys": [{"kty": "oct", "kid": "o", "k": x}]}).to_string(), "key type (kty) oct is not supported"),
            (json!({"keys": [with(&ed, "crv", json!("X25519"))]}).to_string(), "curve X25519 is not supported"),
            (json!({"keys": [with(&rsa, "e", Json::Null)]}).to_string(), "key \"r\": an RSA key needs \"n\" and \"e\""),
            (json!({"keys": [with(&rsa, "n", json!(b64(&[0xff; 128])))]}).to_string(), "RFC 7518 §3.3"),
            (json!({"keys": [with(&rsa, "n", json!("not base64!"))]}).to_string(), "must be base64url"),
            (json!({"keys": [with(&rsa, "e", json!(b64(&[1, 0])))]}).to_string(), "\"e\" must be an odd number"),
            (
                json!({"keys": [with(&rsa, "alg", json!("HS256"))]}).to_string(),
                "\"alg\" HS256 does not fit this RSA key",
            ),
            (json!({"keys": [with(&rsa, "alg", json!("PS256"))]}).to_string(), "\"alg\" PS256 does not fit"),
            (
                json!({"keys": [with(&ed, "alg", json!("RS256"))]}).to_string(),
                "\"alg\" RS256 does not fit this Ed25519",
            ),
            (json!({"keys": [with(&ed, "x", json!(b64(&[7; 31])))]}).to_string(), "32-byte Ed25519 public key"),
            (json!({"keys": [with(&ed, "use", json!("enc"))]}).to_string(), "not a signing key"),
            (json!({"keys": [with(&ed, "key_ops", json!(["encrypt"]))]}).to_string(), "lack \"verify\""),
            (json!({"keys": [with(&ed, "kid", json!(5))]}).to_string(), "key 1: \"kid\" must be a non-empty string"),
        ];
        let path = dir.path().join("jwks.json");
        for (contents, want) in table {
            std::fs::write(&path, &contents).unwrap();
            let refused = Identity::from_config(&jwks_config(None, &path)).unwrap_err();
            assert!(refused.contains(want) && refused.contains(&path.display().to_string()), "{contents}: {refused}");
        }
        let missing = Identity::from_config(&jwks_config(None, &dir.path().join("none.json"))).unwrap_err();
        assert!(missing.contains("cannot read"), "{missing}");
        // The made-up keys themselves load: the refusals above are the changed field's.
        std::fs::write(&path, json!({"keys": [rsa, ed]}).to_string()).unwrap();
        Identity::from_config(&jwks_config(None, &path)).expect("an identity");
    }

    #[test]
    fn auth_without_a_way_to_sign_in_names_jwks_file() {
        let refused = Identity::from_config(&AuthConfig::default()).unwrap_err();
        assert!(refused.contains("jwks_file"), "{refused}");
    }
}
