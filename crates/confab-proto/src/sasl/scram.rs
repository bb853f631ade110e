//! SCRAM (RFC 5802, RFC 7677) with channel binding (RFC 5929, RFC 9266).
//!
//! Both sides are strict: the SCRAM extensions (`m=` and unknown
//! attributes) are refused, since none is defined and RFC 5802 requires
//! failing on `m=`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::{saslprep, ChannelBindingData, ChannelBindingType, Mechanism, SaslFailure};

/// Highest iteration count a client accepts, so a hostile server cannot pin its CPU.
pub const MAX_CLIENT_ITERATIONS: u32 = 1_000_000;
/// Real SCRAM messages are a few hundred bytes; refuse to work on more.
const MAX_MESSAGE_LEN: usize = 8 * 1024;
/// 24 bytes encode to 32 base64 characters without padding.
const NONCE_BYTES: usize = 24;
const SALT_BYTES: usize = 16;

/// Hash function of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    /// Output size in bytes, which is also the size of the stored keys.
    pub fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }

    /// Name as in the mechanism name ("SHA-1", "SHA-256").
    pub fn name(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SHA-1",
            ScramHash::Sha256 => "SHA-256",
        }
    }

    fn h(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Result<Vec<u8>, SaslFailure> {
        match self {
            ScramHash::Sha1 => mac::<Hmac<Sha1>>(key, data),
            ScramHash::Sha256 => mac::<Hmac<Sha256>>(key, data),
        }
    }

    /// Hi() of RFC 5802 is PBKDF2 with HMAC and one output block.
    fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Result<Vec<u8>, SaslFailure> {
        let mut out = vec![0u8; self.output_len()];
        match self {
            ScramHash::Sha1 => pbkdf2::pbkdf2::<Hmac<Sha1>>(password, salt, iterations, &mut out),
            ScramHash::Sha256 => {
                pbkdf2::pbkdf2::<Hmac<Sha256>>(password, salt, iterations, &mut out)
            }
        }
        .map_err(|_| SaslFailure::TemporaryAuthFailure)?;
        Ok(out)
    }

    /// ClientKey, StoredKey, ServerKey from an already SASLprep'd password.
    fn keys(self, password: &str, salt: &[u8], iterations: u32) -> Result<Keys, SaslFailure> {
        let salted = self.hi(password.as_bytes(), salt, iterations)?;
        let client_key = self.hmac(&salted, b"Client Key")?;
        let server_key = self.hmac(&salted, b"Server Key")?;
        let stored_key = self.h(&client_key);
        Ok(Keys {
            client_key,
            stored_key,
            server_key,
        })
    }
}

struct Keys {
    client_key: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

// HMAC takes keys of any length, so the error arm is unreachable; it is
// mapped rather than unwrapped to keep every path panic-free.
fn mac<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Result<Vec<u8>, SaslFailure> {
    let mut m =
        <M as KeyInit>::new_from_slice(key).map_err(|_| SaslFailure::TemporaryAuthFailure)?;
    Mac::update(&mut m, data);
    Ok(m.finalize().into_bytes().to_vec())
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

fn random_nonce() -> String {
    B64.encode(random_bytes(NONCE_BYTES))
}

/// RFC 5802 `printable`: %x21-7E except ",".
fn valid_nonce(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

fn to_str(data: &[u8]) -> Result<&str, SaslFailure> {
    if data.len() > MAX_MESSAGE_LEN {
        return Err(SaslFailure::MalformedRequest);
    }
    std::str::from_utf8(data).map_err(|_| SaslFailure::MalformedRequest)
}

/// Value of the next attribute, which must be `key=`.
fn attr<'a>(it: &mut std::str::Split<'a, char>, key: &str) -> Result<&'a str, SaslFailure> {
    it.next()
        .and_then(|a| a.strip_prefix(key))
        .ok_or(SaslFailure::MalformedRequest)
}

/// No attributes may follow: extensions (including `m=`) are refused.
fn end(it: &mut std::str::Split<'_, char>) -> Result<(), SaslFailure> {
    match it.next() {
        None => Ok(()),
        Some(_) => Err(SaslFailure::MalformedRequest),
    }
}

fn b64(s: &str) -> Result<Vec<u8>, SaslFailure> {
    B64.decode(s).map_err(|_| SaslFailure::IncorrectEncoding)
}

/// RFC 5802 `saslname`: non-empty, "=" only as "=2C" / "=3D", no NUL.
fn decode_saslname(s: &str) -> Result<String, SaslFailure> {
    if s.is_empty() {
        return Err(SaslFailure::MalformedRequest);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some((head, tail)) = rest.split_once('=') {
        out.push_str(head);
        if let Some(t) = tail.strip_prefix("2C") {
            out.push(',');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("3D") {
            out.push('=');
            rest = t;
        } else {
            return Err(SaslFailure::MalformedRequest);
        }
    }
    out.push_str(rest);
    if out.contains('\0') {
        return Err(SaslFailure::MalformedRequest);
    }
    Ok(out)
}

fn encode_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// Iteration count as sent by a server: `posit-number`, within our limits.
fn parse_iterations(s: &str) -> Result<u32, SaslFailure> {
    let digits_ok = !s.is_empty() && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit());
    let i = if digits_ok {
        s.parse::<u32>().ok()
    } else {
        None
    };
    match i {
        Some(i) if (1..=MAX_CLIENT_ITERATIONS).contains(&i) => Ok(i),
        _ => Err(SaslFailure::MalformedRequest),
    }
}

/// What an account stores per hash: never the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramCredentials {
    pub hash: ScramHash,
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl ScramCredentials {
    /// Derive stored keys; the password is SASLprep'd first (failure and
    /// `iterations == 0` give `MalformedRequest`).
    pub fn derive(
        hash: ScramHash,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, SaslFailure> {
        if iterations == 0 {
            return Err(SaslFailure::MalformedRequest);
        }
        let password = saslprep(password)?;
        let keys = hash.keys(&password, salt, iterations)?;
        Ok(ScramCredentials {
            hash,
            iterations,
            salt: salt.to_vec(),
            stored_key: keys.stored_key,
            server_key: keys.server_key,
        })
    }

    /// Derive with a fresh 16-byte random salt.
    pub fn new_random(
        hash: ScramHash,
        password: &str,
        iterations: u32,
    ) -> Result<Self, SaslFailure> {
        Self::derive(hash, password, &random_bytes(SALT_BYTES), iterations)
    }

    /// Check a plaintext password (for SASL PLAIN) against the stored keys, constant time.
    pub fn verify_password(&self, password: &str) -> bool {
        let Ok(other) = Self::derive(self.hash, password, &self.salt, self.iterations) else {
            return false;
        };
        let ok =
            other.stored_key.ct_eq(&self.stored_key) & other.server_key.ct_eq(&self.server_key);
        ok.into()
    }

    fn usable_for(&self, hash: ScramHash) -> bool {
        self.hash == hash
            && self.iterations >= 1
            && self.stored_key.len() == hash.output_len()
            && self.server_key.len() == hash.output_len()
    }
}

/// Result of parsing client-first-message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// SASLprep'd, `=2C`/`=3D` decoded, never empty.
    pub username: String,
    /// Decoded GS2 `a=`; the caller decides whether it is allowed.
    pub authzid: Option<String>,
}

struct Pending {
    gs2_header: String,
    cb: Option<ChannelBindingType>,
    client_first_bare: String,
    client_nonce: String,
    username: String,
    authzid: Option<String>,
}

struct Challenge {
    server_first: String,
    nonce: String,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
    /// False for the unknown-user decoy, which must fail at the end.
    genuine: bool,
}

enum ServerState {
    Start,
    GotClientFirst(Box<Pending>),
    SentServerFirst(Box<Pending>, Box<Challenge>),
    Success {
        username: String,
        authzid: Option<String>,
        cb: Option<ChannelBindingType>,
    },
    Failed,
}

/// Server side of one SCRAM exchange.
///
/// Any error ends the exchange: later calls fail with `MalformedRequest`
/// (except `server_first` with unusable credentials, see there).
pub struct ScramServer {
    mech: Mechanism,
    cb_data: ChannelBindingData,
    server_offered_plus: bool,
    nonce_override: Option<String>,
    state: ServerState,
}

impl ScramServer {
    /// `server_offered_plus` is whether this server advertised any -PLUS
    /// mechanism on this stream; it decides whether a "y" flag is a downgrade.
    /// A non-SCRAM `mech` makes `handle_client_first` fail with `InvalidMechanism`.
    pub fn new(mech: Mechanism, cb_data: ChannelBindingData, server_offered_plus: bool) -> Self {
        ScramServer {
            mech,
            cb_data,
            server_offered_plus,
            nonce_override: None,
            state: ServerState::Start,
        }
    }

    /// For test vectors only: a fixed server nonce makes the exchange replayable.
    pub fn with_nonce(
        mech: Mechanism,
        cb_data: ChannelBindingData,
        server_offered_plus: bool,
        server_nonce: &str,
    ) -> Self {
        let mut s = Self::new(mech, cb_data, server_offered_plus);
        s.nonce_override = Some(server_nonce.to_owned());
        s
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    fn hash(&self) -> Result<ScramHash, SaslFailure> {
        self.mech.hash().ok_or(SaslFailure::InvalidMechanism)
    }

    /// Parse client-first-message (GS2 header + bare part).
    pub fn handle_client_first(&mut self, data: &[u8]) -> Result<ClientFirst, SaslFailure> {
        if !matches!(
            std::mem::replace(&mut self.state, ServerState::Failed),
            ServerState::Start
        ) {
            return Err(SaslFailure::MalformedRequest);
        }
        self.hash()?;
        let plus = self.mech.is_plus();
        // A -PLUS mechanism we did not offer (or cannot back) was never valid to pick.
        if plus && !(self.server_offered_plus && self.cb_data.any()) {
            return Err(SaslFailure::InvalidMechanism);
        }

        let msg = to_str(data)?;
        let (flag, rest) = msg.split_once(',').ok_or(SaslFailure::MalformedRequest)?;
        let (authz, bare) = rest.split_once(',').ok_or(SaslFailure::MalformedRequest)?;

        let cb = match flag {
            "n" if !plus => None,
            // RFC 5802 §6: the client could bind but saw no -PLUS; if we
            // offered one, someone stripped it.
            "y" if !plus => {
                if self.server_offered_plus {
                    return Err(SaslFailure::NotAuthorized);
                }
                None
            }
            _ => {
                let name = flag
                    .strip_prefix("p=")
                    .ok_or(SaslFailure::MalformedRequest)?;
                let syntax_ok = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
                if !plus || !syntax_ok {
                    return Err(SaslFailure::MalformedRequest);
                }
                // Well-formed but not available here: a generic failure, as
                // the type list was advertised (XEP-0440) and the client ignored it.
                let ty = ChannelBindingType::from_name(name).ok_or(SaslFailure::NotAuthorized)?;
                if self.cb_data.get(ty).is_none() {
                    return Err(SaslFailure::NotAuthorized);
                }
                Some(ty)
            }
        };

        let authzid = if authz.is_empty() {
            None
        } else {
            let a = authz
                .strip_prefix("a=")
                .ok_or(SaslFailure::MalformedRequest)?;
            Some(decode_saslname(a)?)
        };

        let mut it = bare.split(',');
        let user = attr(&mut it, "n=")?;
        let client_nonce = attr(&mut it, "r=")?;
        end(&mut it)?;
        let username = saslprep(&decode_saslname(user)?)?;
        if username.is_empty() || !valid_nonce(client_nonce) {
            return Err(SaslFailure::MalformedRequest);
        }

        self.state = ServerState::GotClientFirst(Box::new(Pending {
            gs2_header: format!("{flag},{authz},"),
            cb,
            client_first_bare: bare.to_owned(),
            client_nonce: client_nonce.to_owned(),
            username: username.clone(),
            authzid: authzid.clone(),
        }));
        Ok(ClientFirst { username, authzid })
    }

    /// Build server-first-message from the user's stored credentials.
    ///
    /// Credentials for another hash (or with bad key sizes) give
    /// `TemporaryAuthFailure` and leave the exchange where it was, so the
    /// caller may still answer with `server_first_unknown_user`.
    pub fn server_first(&mut self, creds: &ScramCredentials) -> Result<Vec<u8>, SaslFailure> {
        let hash = self.hash()?;
        if !creds.usable_for(hash) {
            return Err(SaslFailure::TemporaryAuthFailure);
        }
        self.challenge(
            creds.salt.clone(),
            creds.iterations,
            creds.stored_key.clone(),
            creds.server_key.clone(),
            true,
        )
    }

    /// Answer for a user that does not exist (or has no usable credentials):
    /// the salt is derived from the name under `secret`, which the server keeps
    /// across restarts, so repeated probes see the same salt (as for a real
    /// account), and the exchange fails only at the end with `NotAuthorized`,
    /// like a wrong password. `iterations` should be what real accounts show.
    pub fn server_first_unknown_user(
        &mut self,
        iterations: u32,
        secret: &[u8],
    ) -> Result<Vec<u8>, SaslFailure> {
        let hash = self.hash()?;
        let username = match &self.state {
            ServerState::GotClientFirst(p) => p.username.clone(),
            _ => {
                self.state = ServerState::Failed;
                return Err(SaslFailure::MalformedRequest);
            }
        };
        let mut label = Vec::with_capacity(username.len().saturating_add(8));
        label.extend_from_slice(hash.name().as_bytes());
        label.push(0);
        label.extend_from_slice(username.as_bytes());
        let mut salt = ScramHash::Sha256.hmac(secret, &label)?;
        salt.truncate(SALT_BYTES);
        let n = hash.output_len();
        self.challenge(
            salt,
            iterations.max(1),
            random_bytes(n),
            random_bytes(n),
            false,
        )
    }

    fn challenge(
        &mut self,
        salt: Vec<u8>,
        iterations: u32,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
        genuine: bool,
    ) -> Result<Vec<u8>, SaslFailure> {
        let ServerState::GotClientFirst(pending) =
            std::mem::replace(&mut self.state, ServerState::Failed)
        else {
            return Err(SaslFailure::MalformedRequest);
        };
        let server_nonce = self.nonce_override.take().unwrap_or_else(random_nonce);
        if !valid_nonce(&server_nonce) {
            return Err(SaslFailure::TemporaryAuthFailure);
        }
        let nonce = format!("{}{}", pending.client_nonce, server_nonce);
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(salt));
        let out = server_first.clone().into_bytes();
        self.state = ServerState::SentServerFirst(
            pending,
            Box::new(Challenge {
                server_first,
                nonce,
                stored_key,
                server_key,
                genuine,
            }),
        );
        Ok(out)
    }

    /// Check client-final-message; on success returns server-final ("v=...").
    pub fn handle_client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, SaslFailure> {
        let ServerState::SentServerFirst(pending, ch) =
            std::mem::replace(&mut self.state, ServerState::Failed)
        else {
            return Err(SaslFailure::MalformedRequest);
        };
        let hash = self.hash()?;
        let msg = to_str(data)?;
        // The proof is always last and covers everything before it.
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(SaslFailure::MalformedRequest)?;
        if proof.contains(',') {
            return Err(SaslFailure::MalformedRequest);
        }
        let mut it = without_proof.split(',');
        let cbind = attr(&mut it, "c=")?;
        let nonce = attr(&mut it, "r=")?;
        end(&mut it)?;
        let cbind = b64(cbind)?;
        let proof = b64(proof)?;

        // c= must repeat our view of the GS2 header plus our own binding data:
        // this is what ties the authentication to this TLS channel.
        let mut expected_cb = pending.gs2_header.clone().into_bytes();
        if let Some(ty) = pending.cb {
            expected_cb.extend_from_slice(self.cb_data.get(ty).ok_or(SaslFailure::NotAuthorized)?);
        }
        let cb_ok = cbind.ct_eq(&expected_cb);
        let nonce_ok = nonce.as_bytes().ct_eq(ch.nonce.as_bytes());

        let auth_message = format!(
            "{},{},{}",
            pending.client_first_bare, ch.server_first, without_proof
        );
        let client_sig = hash.hmac(&ch.stored_key, auth_message.as_bytes())?;
        let client_key = xor(&proof, &client_sig);
        let key_ok = hash.h(&client_key).ct_eq(&ch.stored_key);
        let shape_ok = Choice::from(u8::from(ch.genuine && proof.len() == client_sig.len()));

        if !bool::from(cb_ok & nonce_ok & key_ok & shape_ok) {
            return Err(SaslFailure::NotAuthorized);
        }
        let server_sig = hash.hmac(&ch.server_key, auth_message.as_bytes())?;
        let Pending {
            username,
            authzid,
            cb,
            ..
        } = *pending;
        self.state = ServerState::Success {
            username,
            authzid,
            cb,
        };
        Ok(format!("v={}", B64.encode(server_sig)).into_bytes())
    }

    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, ServerState::Success { .. })
    }

    /// The authenticated (SASLprep'd) username; `None` until success.
    pub fn username(&self) -> Option<&str> {
        match &self.state {
            ServerState::Success { username, .. } => Some(username),
            _ => None,
        }
    }

    /// The requested authzid; `None` until success or if none was given.
    pub fn authzid(&self) -> Option<&str> {
        match &self.state {
            ServerState::Success { authzid, .. } => authzid.as_deref(),
            _ => None,
        }
    }

    /// Channel binding actually verified; `None` until success or without -PLUS.
    pub fn channel_binding(&self) -> Option<ChannelBindingType> {
        match &self.state {
            ServerState::Success { cb, .. } => *cb,
            _ => None,
        }
    }
}

enum ClientState {
    Start,
    SentFirst,
    SentFinal { server_signature: Vec<u8> },
    Done,
    Failed,
}

/// Client side of one SCRAM exchange (server tests, later the client SDK).
pub struct ScramClient {
    hash: ScramHash,
    /// SASLprep'd.
    password: String,
    gs2_header: String,
    cb_data: Vec<u8>,
    client_nonce: String,
    client_first_bare: String,
    state: ClientState,
}

impl ScramClient {
    /// `cb` is what our TLS layer can bind to; `server_supports_plus` is
    /// whether the server advertised -PLUS. RFC 5802 §6 rules: a -PLUS
    /// mechanism needs `cb` (else `InvalidMechanism`); having `cb` while the
    /// server offers -PLUS but picking a non-PLUS mechanism is refused too.
    pub fn new(
        mech: Mechanism,
        username: &str,
        password: &str,
        authzid: Option<&str>,
        cb: Option<(ChannelBindingType, Vec<u8>)>,
        server_supports_plus: bool,
    ) -> Result<Self, SaslFailure> {
        Self::with_nonce(
            mech,
            username,
            password,
            authzid,
            cb,
            server_supports_plus,
            &random_nonce(),
        )
    }

    /// For test vectors only: a fixed client nonce makes the exchange replayable.
    pub fn with_nonce(
        mech: Mechanism,
        username: &str,
        password: &str,
        authzid: Option<&str>,
        cb: Option<(ChannelBindingType, Vec<u8>)>,
        server_supports_plus: bool,
        client_nonce: &str,
    ) -> Result<Self, SaslFailure> {
        let hash = mech.hash().ok_or(SaslFailure::InvalidMechanism)?;
        let username = saslprep(username)?;
        let password = saslprep(password)?;
        if username.is_empty() || !valid_nonce(client_nonce) {
            return Err(SaslFailure::MalformedRequest);
        }
        let (flag, cb_data) = match (mech.is_plus(), cb) {
            (true, Some((ty, data))) if !data.is_empty() => (format!("p={}", ty.name()), data),
            (true, _) => return Err(SaslFailure::InvalidMechanism),
            (false, Some(_)) if server_supports_plus => return Err(SaslFailure::InvalidMechanism),
            (false, Some(_)) => ("y".to_owned(), Vec::new()),
            (false, None) => ("n".to_owned(), Vec::new()),
        };
        let authz = match authzid {
            Some(a) if a.contains('\0') => return Err(SaslFailure::InvalidAuthzid),
            Some(a) if !a.is_empty() => format!("a={}", encode_saslname(a)),
            _ => String::new(),
        };
        Ok(ScramClient {
            hash,
            password,
            gs2_header: format!("{flag},{authz},"),
            cb_data,
            client_nonce: client_nonce.to_owned(),
            client_first_bare: format!("n={},r={client_nonce}", encode_saslname(&username)),
            state: ClientState::Start,
        })
    }

    /// client-first-message (the SASL initial response).
    pub fn client_first(&mut self) -> Vec<u8> {
        if matches!(self.state, ClientState::Start) {
            self.state = ClientState::SentFirst;
        }
        format!("{}{}", self.gs2_header, self.client_first_bare).into_bytes()
    }

    /// Parse server-first-message and return client-final-message.
    pub fn handle_server_first(&mut self, data: &[u8]) -> Result<Vec<u8>, SaslFailure> {
        if !matches!(
            std::mem::replace(&mut self.state, ClientState::Failed),
            ClientState::SentFirst
        ) {
            return Err(SaslFailure::MalformedRequest);
        }
        let msg = to_str(data)?;
        let mut it = msg.split(',');
        let nonce = attr(&mut it, "r=")?;
        let salt = attr(&mut it, "s=")?;
        let iterations = attr(&mut it, "i=")?;
        end(&mut it)?;
        // The server must echo our nonce and add its own.
        if !valid_nonce(nonce)
            || !nonce.starts_with(&self.client_nonce)
            || nonce.len() == self.client_nonce.len()
        {
            return Err(SaslFailure::NotAuthorized);
        }
        let salt = b64(salt)?;
        if salt.is_empty() {
            return Err(SaslFailure::MalformedRequest);
        }
        let iterations = parse_iterations(iterations)?;

        let keys = self.hash.keys(&self.password, &salt, iterations)?;
        let mut cbind = self.gs2_header.clone().into_bytes();
        cbind.extend_from_slice(&self.cb_data);
        let without_proof = format!("c={},r={nonce}", B64.encode(cbind));
        let auth_message = format!("{},{},{}", self.client_first_bare, msg, without_proof);
        let client_sig = self.hash.hmac(&keys.stored_key, auth_message.as_bytes())?;
        let proof = xor(&keys.client_key, &client_sig);
        let server_signature = self.hash.hmac(&keys.server_key, auth_message.as_bytes())?;
        self.state = ClientState::SentFinal { server_signature };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Check server-final-message: the server proves it knows the keys too.
    pub fn verify_server_final(&mut self, data: &[u8]) -> Result<(), SaslFailure> {
        let ClientState::SentFinal { server_signature } =
            std::mem::replace(&mut self.state, ClientState::Failed)
        else {
            return Err(SaslFailure::MalformedRequest);
        };
        let msg = to_str(data)?;
        if msg.starts_with("e=") {
            return Err(SaslFailure::NotAuthorized);
        }
        let mut it = msg.split(',');
        let v = attr(&mut it, "v=")?;
        end(&mut it)?;
        if !bool::from(b64(v)?.ct_eq(&server_signature)) {
            return Err(SaslFailure::NotAuthorized);
        }
        self.state = ClientState::Done;
        Ok(())
    }

    /// True once the server's signature has been verified.
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, ClientState::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC5802_CNONCE: &str = "fyko+d2lbbFgONRv9qkxdawL";
    const RFC5802_SNONCE: &str = "3rfcNHYJY1ZVvWVs7j";
    const RFC5802_SALT: &str = "QSXCR+Q6sek8bf92";
    const RFC5802_SERVER_FIRST: &str =
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
    const RFC5802_CLIENT_FINAL: &str =
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
    const RFC5802_SERVER_FINAL: &str = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=";

    const RFC7677_CNONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const RFC7677_SNONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC7677_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const RFC7677_SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC7677_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC7677_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    /// Cheap iteration count for tests that do not check vectors.
    const IT: u32 = 64;

    struct Vector {
        mech: Mechanism,
        cnonce: &'static str,
        snonce: &'static str,
        salt: &'static str,
        server_first: &'static str,
        client_final: &'static str,
        server_final: &'static str,
    }

    const VECTORS: [Vector; 2] = [
        Vector {
            mech: Mechanism::ScramSha1,
            cnonce: RFC5802_CNONCE,
            snonce: RFC5802_SNONCE,
            salt: RFC5802_SALT,
            server_first: RFC5802_SERVER_FIRST,
            client_final: RFC5802_CLIENT_FINAL,
            server_final: RFC5802_SERVER_FINAL,
        },
        Vector {
            mech: Mechanism::ScramSha256,
            cnonce: RFC7677_CNONCE,
            snonce: RFC7677_SNONCE,
            salt: RFC7677_SALT,
            server_first: RFC7677_SERVER_FIRST,
            client_final: RFC7677_CLIENT_FINAL,
            server_final: RFC7677_SERVER_FINAL,
        },
    ];

    #[test]
    fn rfc_vectors_client() {
        for v in &VECTORS {
            let mut c =
                ScramClient::with_nonce(v.mech, "user", "pencil", None, None, false, v.cnonce)
                    .unwrap();
            assert_eq!(
                c.client_first(),
                format!("n,,n=user,r={}", v.cnonce).as_bytes()
            );
            let fin = c.handle_server_first(v.server_first.as_bytes()).unwrap();
            assert_eq!(String::from_utf8(fin).unwrap(), v.client_final);
            assert!(!c.is_authenticated());
            c.verify_server_final(v.server_final.as_bytes()).unwrap();
            assert!(c.is_authenticated());
        }
    }

    #[test]
    fn rfc_vectors_server() {
        for v in &VECTORS {
            let hash = v.mech.hash().unwrap();
            let salt = B64.decode(v.salt).unwrap();
            let creds = ScramCredentials::derive(hash, "pencil", &salt, 4096).unwrap();
            assert!(creds.verify_password("pencil"));
            assert!(!creds.verify_password("pencil2"));

            let mut s =
                ScramServer::with_nonce(v.mech, ChannelBindingData::default(), false, v.snonce);
            let first = s
                .handle_client_first(format!("n,,n=user,r={}", v.cnonce).as_bytes())
                .unwrap();
            assert_eq!(first.username, "user");
            assert_eq!(first.authzid, None);
            assert_eq!(s.server_first(&creds).unwrap(), v.server_first.as_bytes());
            assert!(s.username().is_none());
            let fin = s.handle_client_final(v.client_final.as_bytes()).unwrap();
            assert_eq!(fin, v.server_final.as_bytes());
            assert!(s.is_authenticated());
            assert_eq!(s.username(), Some("user"));
            assert_eq!(s.channel_binding(), None);
        }
    }

    fn cb_data() -> ChannelBindingData {
        ChannelBindingData {
            tls_exporter: Some(vec![0xE1; 32]),
            tls_server_end_point: Some(vec![0x5E; 32]),
        }
    }

    /// Full exchange; returns the first error from either side.
    fn exchange(
        mut c: ScramClient,
        mut s: ScramServer,
        creds: Option<&ScramCredentials>,
    ) -> Result<ScramServer, SaslFailure> {
        s.handle_client_first(&c.client_first())?;
        let sf = match creds {
            Some(creds) => s.server_first(creds)?,
            None => s.server_first_unknown_user(IT, b"secret")?,
        };
        let cf = c.handle_server_first(&sf)?;
        let fin = s.handle_client_final(&cf)?;
        c.verify_server_final(&fin)?;
        assert!(c.is_authenticated());
        Ok(s)
    }

    fn creds_for(mech: Mechanism, pw: &str) -> ScramCredentials {
        ScramCredentials::new_random(mech.hash().unwrap(), pw, IT).unwrap()
    }

    #[test]
    fn round_trip_all_mechanisms() {
        let cb_types = [
            ChannelBindingType::TlsExporter,
            ChannelBindingType::TlsServerEndPoint,
        ];
        for mech in Mechanism::ALL.into_iter().filter(|m| m.hash().is_some()) {
            let creds = creds_for(mech, "s3cr\u{00AA}t");
            if mech.is_plus() {
                for ty in cb_types {
                    let data = cb_data().get(ty).unwrap().to_vec();
                    let c = ScramClient::new(
                        mech,
                        "juliet",
                        "s3cr\u{00AA}t",
                        None,
                        Some((ty, data)),
                        true,
                    )
                    .unwrap();
                    let s = ScramServer::new(mech, cb_data(), true);
                    let s = exchange(c, s, Some(&creds)).unwrap();
                    assert_eq!(s.channel_binding(), Some(ty));
                    assert_eq!(s.username(), Some("juliet"));
                }
            } else {
                // Password differs only by SASLprep mapping: must still work.
                let c = ScramClient::new(mech, "juliet", "s3crat", None, None, true).unwrap();
                let s = exchange(c, ScramServer::new(mech, cb_data(), true), Some(&creds)).unwrap();
                assert!(s.is_authenticated());
            }
        }
    }

    #[test]
    fn authzid_and_escaped_names() {
        let mech = Mechanism::ScramSha256;
        let creds = creds_for(mech, "pw");
        let mut c =
            ScramClient::new(mech, "a,b=c", "pw", Some("x=y,z@example.org"), None, false).unwrap();
        let first = c.client_first();
        assert!(first.starts_with(b"n,a=x=3Dy=2Cz@example.org,n=a=2Cb=3Dc,r="));
        let mut s = ScramServer::new(mech, ChannelBindingData::default(), false);
        let cf = s.handle_client_first(&first).unwrap();
        assert_eq!(cf.username, "a,b=c");
        assert_eq!(cf.authzid.as_deref(), Some("x=y,z@example.org"));
        let fin = c
            .handle_server_first(&s.server_first(&creds).unwrap())
            .unwrap();
        let v = s.handle_client_final(&fin).unwrap();
        c.verify_server_final(&v).unwrap();
        assert_eq!(s.authzid(), Some("x=y,z@example.org"));
    }

    #[test]
    fn wrong_password() {
        for mech in [Mechanism::ScramSha1, Mechanism::ScramSha256Plus] {
            let creds = creds_for(mech, "right");
            let cb = mech
                .is_plus()
                .then(|| (ChannelBindingType::TlsExporter, vec![0xE1; 32]));
            let c = ScramClient::new(mech, "u", "wrong", None, cb, true).unwrap();
            let r = exchange(c, ScramServer::new(mech, cb_data(), true), Some(&creds));
            assert_eq!(r.err(), Some(SaslFailure::NotAuthorized));
        }
    }

    #[test]
    fn tampered_channel_binding() {
        let mech = Mechanism::ScramSha256Plus;
        let creds = creds_for(mech, "pw");
        for ty in [
            ChannelBindingType::TlsExporter,
            ChannelBindingType::TlsServerEndPoint,
        ] {
            // Client sees a different TLS channel (e.g. a MITM terminating TLS).
            let c =
                ScramClient::new(mech, "u", "pw", None, Some((ty, vec![0xAA; 32])), true).unwrap();
            let r = exchange(c, ScramServer::new(mech, cb_data(), true), Some(&creds));
            assert_eq!(r.err(), Some(SaslFailure::NotAuthorized));
        }
        // Type the server cannot provide on this connection.
        let only_endpoint = ChannelBindingData {
            tls_exporter: None,
            tls_server_end_point: Some(vec![1; 32]),
        };
        let c = ScramClient::new(
            mech,
            "u",
            "pw",
            None,
            Some((ChannelBindingType::TlsExporter, vec![1; 32])),
            true,
        )
        .unwrap();
        let r = exchange(c, ScramServer::new(mech, only_endpoint, true), Some(&creds));
        assert_eq!(r.err(), Some(SaslFailure::NotAuthorized));

        // A valid proof over a rewritten c= (binding stripped) must not pass.
        let mut c = ScramClient::new(
            mech,
            "u",
            "pw",
            None,
            Some((ChannelBindingType::TlsExporter, vec![0xE1; 32])),
            true,
        )
        .unwrap();
        let mut s = ScramServer::new(mech, cb_data(), true);
        s.handle_client_first(&c.client_first()).unwrap();
        let cf = c
            .handle_server_first(&s.server_first(&creds).unwrap())
            .unwrap();
        let cf = String::from_utf8(cf).unwrap();
        let (_, rest) = cf.split_once(",r=").unwrap();
        let forged = format!("c={},r={rest}", B64.encode("p=tls-exporter,,"));
        assert_eq!(
            s.handle_client_final(forged.as_bytes()),
            Err(SaslFailure::NotAuthorized)
        );
    }

    #[test]
    fn downgrade_detection() {
        let mech = Mechanism::ScramSha256;
        let creds = creds_for(mech, "pw");
        let cb = || Some((ChannelBindingType::TlsExporter, vec![0xE1; 32]));
        // Client can bind but never saw -PLUS: sends "y".
        let c = ScramClient::new(mech, "u", "pw", None, cb(), false).unwrap();
        assert!(c.gs2_header.starts_with("y,"));
        let r = exchange(c, ScramServer::new(mech, cb_data(), true), Some(&creds));
        assert_eq!(r.err(), Some(SaslFailure::NotAuthorized));
        // Server really did not offer -PLUS: "y" is fine.
        let c = ScramClient::new(mech, "u", "pw", None, cb(), false).unwrap();
        let srv = ScramServer::new(mech, ChannelBindingData::default(), false);
        assert!(exchange(c, srv, Some(&creds)).is_ok());
        // Client must not pick non-PLUS when it can bind and -PLUS is offered.
        assert_eq!(
            ScramClient::new(mech, "u", "pw", None, cb(), true).err(),
            Some(SaslFailure::InvalidMechanism)
        );
        // -PLUS needs binding data.
        assert_eq!(
            ScramClient::new(Mechanism::ScramSha1Plus, "u", "pw", None, None, true).err(),
            Some(SaslFailure::InvalidMechanism)
        );
    }

    #[test]
    fn unknown_user_fails_at_the_end() {
        let mech = Mechanism::ScramSha256;
        let c = ScramClient::new(mech, "ghost", "pw", None, None, false).unwrap();
        let s = ScramServer::new(mech, ChannelBindingData::default(), false);
        assert_eq!(exchange(c, s, None).err(), Some(SaslFailure::NotAuthorized));

        let salt_of = |user: &str| {
            let mut s = ScramServer::new(mech, ChannelBindingData::default(), false);
            s.handle_client_first(format!("n,,n={user},r=abc").as_bytes())
                .unwrap();
            let sf =
                String::from_utf8(s.server_first_unknown_user(4096, b"secret").unwrap()).unwrap();
            assert!(sf.ends_with(",i=4096"));
            sf.split(',').nth(1).unwrap().to_owned()
        };
        assert_eq!(salt_of("ghost"), salt_of("ghost"));
        assert_ne!(salt_of("ghost"), salt_of("phantom"));
    }

    #[test]
    fn credentials_for_other_hash() {
        let mut s = ScramServer::new(Mechanism::ScramSha256, ChannelBindingData::default(), false);
        s.handle_client_first(b"n,,n=u,r=abc").unwrap();
        let sha1 = creds_for(Mechanism::ScramSha1, "pw");
        assert_eq!(
            s.server_first(&sha1),
            Err(SaslFailure::TemporaryAuthFailure)
        );
        // Exchange still usable for the decoy path.
        assert!(s.server_first_unknown_user(IT, b"secret").is_ok());
    }

    #[test]
    fn credentials() {
        let a = ScramCredentials::new_random(ScramHash::Sha256, "pw", IT).unwrap();
        let b = ScramCredentials::new_random(ScramHash::Sha256, "pw", IT).unwrap();
        assert_eq!(a.salt.len(), 16);
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.stored_key, b.stored_key);
        assert!(a.verify_password("pw"));
        assert!(!a.verify_password("pW"));
        assert!(!a.verify_password("\u{0007}"));
        assert_eq!(
            ScramCredentials::derive(ScramHash::Sha1, "pw", b"salt", 0),
            Err(SaslFailure::MalformedRequest)
        );
        assert_eq!(
            ScramCredentials::derive(ScramHash::Sha1, "\u{0007}", b"salt", 1),
            Err(SaslFailure::MalformedRequest)
        );
    }

    #[test]
    fn generated_nonces_are_printable() {
        let mut c = ScramClient::new(Mechanism::ScramSha1, "u", "p", None, None, false).unwrap();
        assert_eq!(c.client_nonce.len(), 32);
        assert!(valid_nonce(&c.client_nonce));
        let mut s = ScramServer::new(Mechanism::ScramSha1, ChannelBindingData::default(), false);
        s.handle_client_first(&c.client_first()).unwrap();
        let sf = s.server_first_unknown_user(IT, b"secret").unwrap();
        let sf = String::from_utf8(sf).unwrap();
        let nonce = sf.split(',').next().unwrap().strip_prefix("r=").unwrap();
        assert_eq!(nonce.len(), 64);
        assert!(valid_nonce(nonce));
    }

    fn client_first_err(mech: Mechanism, offered_plus: bool, msg: &[u8]) -> SaslFailure {
        let mut s = ScramServer::new(mech, cb_data(), offered_plus);
        let e = s.handle_client_first(msg).unwrap_err();
        // A failed exchange stays failed.
        assert!(s.server_first_unknown_user(IT, b"secret").is_err());
        e
    }

    #[test]
    fn malformed_client_first() {
        use SaslFailure::*;
        let m = Mechanism::ScramSha256;
        let p = Mechanism::ScramSha256Plus;
        let cases: &[(Mechanism, &[u8], SaslFailure)] = &[
            (m, b"", MalformedRequest),
            (m, b"garbage", MalformedRequest),
            (m, b"n,", MalformedRequest),
            (m, b"n,,", MalformedRequest),
            (m, b"n,,n=user", MalformedRequest),
            (m, b"n,,r=abc,n=user", MalformedRequest),
            (m, b"n,,n=,r=abc", MalformedRequest),
            (m, b"n,,n=user,r=", MalformedRequest),
            (m, b"n,,n=user,r=a\x7fb", MalformedRequest),
            (m, b"n,,m=ext,n=user,r=abc", MalformedRequest),
            (m, b"n,,n=user,r=abc,x=ext", MalformedRequest),
            (m, b"n,,n=user,r=abc,", MalformedRequest),
            (m, b"n,,n=us=er,r=abc", MalformedRequest),
            (m, b"n,,n=us=2c,r=abc", MalformedRequest),
            (m, b"n,,n=\xff,r=abc", MalformedRequest),
            (m, b"n,,n=u\x00,r=abc", MalformedRequest),
            (m, b"n,,n=\x07,r=abc", MalformedRequest),
            (m, b"n,x=y,n=user,r=abc", MalformedRequest),
            (m, b"n,a=,n=user,r=abc", MalformedRequest),
            (m, b"n,a=b=,n=user,r=abc", MalformedRequest),
            (m, b"q,,n=user,r=abc", MalformedRequest),
            (m, b"p=tls-exporter,,n=user,r=abc", MalformedRequest),
            (m, b"y,,n=user,r=abc", NotAuthorized),
            (p, b"n,,n=user,r=abc", MalformedRequest),
            (p, b"y,,n=user,r=abc", MalformedRequest),
            (p, b"p=,,n=user,r=abc", MalformedRequest),
            (p, b"p=tls_exporter,,n=user,r=abc", MalformedRequest),
            (p, b"p=tls-unique,,n=user,r=abc", NotAuthorized),
            (Mechanism::Plain, b"n,,n=user,r=abc", InvalidMechanism),
        ];
        for (mech, msg, want) in cases {
            assert_eq!(
                client_first_err(*mech, true, msg),
                *want,
                "{}",
                String::from_utf8_lossy(msg)
            );
        }
        // -PLUS that this server did not offer.
        assert_eq!(
            client_first_err(p, false, b"p=tls-exporter,,n=user,r=abc"),
            InvalidMechanism
        );
        let huge = vec![b'a'; MAX_MESSAGE_LEN + 1];
        assert_eq!(client_first_err(m, false, &huge), MalformedRequest);
    }

    /// A server that has answered "n,,n=user,r=abc" with nonce "abcSRV".
    fn server_after_first(creds: &ScramCredentials) -> ScramServer {
        let mut s = ScramServer::with_nonce(
            Mechanism::ScramSha1,
            ChannelBindingData::default(),
            false,
            "SRV",
        );
        s.handle_client_first(b"n,,n=user,r=abc").unwrap();
        s.server_first(creds).unwrap();
        s
    }

    #[test]
    fn malformed_client_final() {
        use SaslFailure::*;
        let creds = ScramCredentials::derive(ScramHash::Sha1, "pw", b"salt", 1).unwrap();
        let proof = B64.encode([0u8; 20]);
        let cases: Vec<(String, SaslFailure)> = vec![
            (String::new(), MalformedRequest),
            ("garbage".into(), MalformedRequest),
            ("c=biws,r=abcSRV".into(), MalformedRequest),
            (format!("r=abcSRV,c=biws,p={proof}"), MalformedRequest),
            (format!("c=biws,p={proof}"), MalformedRequest),
            (format!("m=x,c=biws,r=abcSRV,p={proof}"), MalformedRequest),
            (format!("c=biws,r=abcSRV,m=x,p={proof}"), MalformedRequest),
            (format!("c=biws,r=abcSRV,x=1,p={proof}"), MalformedRequest),
            (format!("c=biws,r=abcSRV,p={proof},x=1"), MalformedRequest),
            (format!("c=bi!s,r=abcSRV,p={proof}"), IncorrectEncoding),
            (format!("c=biw,r=abcSRV,p={proof}"), IncorrectEncoding),
            ("c=biws,r=abcSRV,p=AAA".into(), IncorrectEncoding),
            ("c=biws,r=abcSRV,p=".into(), NotAuthorized),
            ("c=biws,r=abcSRV,p=AAAA".into(), NotAuthorized),
            (format!("c=biws,r=abcSRVX,p={proof}"), NotAuthorized),
            (format!("c=biws,r=abc,p={proof}"), NotAuthorized),
            (format!("c=eSws,r=abcSRV,p={proof}"), NotAuthorized),
            (format!("c=biws,r=abcSRV,p={proof}"), NotAuthorized),
        ];
        for (msg, want) in cases {
            let mut s = server_after_first(&creds);
            assert_eq!(s.handle_client_final(msg.as_bytes()), Err(want), "{msg}");
            assert!(!s.is_authenticated());
        }
        let mut s = server_after_first(&creds);
        assert_eq!(s.handle_client_final(b"c=\xff"), Err(MalformedRequest));
    }

    #[test]
    fn out_of_order_calls() {
        let creds = creds_for(Mechanism::ScramSha1, "pw");
        let mut s = ScramServer::new(Mechanism::ScramSha1, ChannelBindingData::default(), false);
        assert!(s.handle_client_final(b"c=biws,r=a,p=AAAA").is_err());
        let mut s = ScramServer::new(Mechanism::ScramSha1, ChannelBindingData::default(), false);
        assert!(s.server_first(&creds).is_err());
        assert!(s.server_first_unknown_user(IT, b"secret").is_err());
        let mut s = server_after_first(&creds);
        assert!(s.handle_client_first(b"n,,n=user,r=abc").is_err());
        assert!(s.handle_client_final(b"c=biws,r=abcSRV,p=AAAA").is_err());

        let mut c = ScramClient::new(Mechanism::ScramSha1, "u", "p", None, None, false).unwrap();
        assert!(c.handle_server_first(b"r=x,s=QQ==,i=1").is_err());
        assert!(c.verify_server_final(b"v=AAAA").is_err());
    }

    fn client_after_first() -> ScramClient {
        let mut c = ScramClient::with_nonce(
            Mechanism::ScramSha1,
            "user",
            "pencil",
            None,
            None,
            false,
            "abc",
        )
        .unwrap();
        c.client_first();
        c
    }

    #[test]
    fn hostile_server_first() {
        use SaslFailure::*;
        let cases: &[(&[u8], SaslFailure)] = &[
            (b"", MalformedRequest),
            (b"\xff\xfe", MalformedRequest),
            (b"r=abcS,s=QQ==", MalformedRequest),
            (b"r=abcS,i=1", MalformedRequest),
            (b"s=QQ==,r=abcS,i=1", MalformedRequest),
            (b"m=x,r=abcS,s=QQ==,i=1", MalformedRequest),
            (b"r=abcS,s=QQ==,i=1,x=y", MalformedRequest),
            (b"r=abcS,s=QQ==,i=1,e=other-error", MalformedRequest),
            (b"e=other-error", MalformedRequest),
            (b"r=abcS,s=QQ==,i=0", MalformedRequest),
            (b"r=abcS,s=QQ==,i=-1", MalformedRequest),
            (b"r=abcS,s=QQ==,i=+5", MalformedRequest),
            (b"r=abcS,s=QQ==,i=01", MalformedRequest),
            (b"r=abcS,s=QQ==,i=", MalformedRequest),
            (b"r=abcS,s=QQ==,i=1000001", MalformedRequest),
            (b"r=abcS,s=QQ==,i=4294967295", MalformedRequest),
            (b"r=abcS,s=QQ==,i=4294967296", MalformedRequest),
            (b"r=abcS,s=QQ==,i=99999999999999999999999", MalformedRequest),
            (b"r=abcS,s=,i=1", MalformedRequest),
            (b"r=abcS,s=Q,i=1", IncorrectEncoding),
            (b"r=abcS,s=Q!==,i=1", IncorrectEncoding),
            (b"r=xyzS,s=QQ==,i=1", NotAuthorized),
            (b"r=abc,s=QQ==,i=1", NotAuthorized),
            (b"r=,s=QQ==,i=1", NotAuthorized),
        ];
        for (msg, want) in cases {
            let mut c = client_after_first();
            assert_eq!(
                c.handle_server_first(msg),
                Err(*want),
                "{}",
                String::from_utf8_lossy(msg)
            );
            // Failed exchange stays failed.
            assert!(c.verify_server_final(b"v=AAAA").is_err());
        }
        let mut c = client_after_first();
        assert!(c.handle_server_first(b"r=abcS,s=QQ==,i=1").is_ok());
    }

    #[test]
    fn hostile_server_final() {
        use SaslFailure::*;
        let cases: &[(&[u8], SaslFailure)] = &[
            (b"", MalformedRequest),
            (b"\xc3", MalformedRequest),
            (b"e=invalid-proof", NotAuthorized),
            (b"e=", NotAuthorized),
            (b"v=", NotAuthorized),
            (b"v=!!", IncorrectEncoding),
            (b"v=AAAA", NotAuthorized),
            (b"v=AAAA,x=y", MalformedRequest),
            (b"m=x,v=AAAA", MalformedRequest),
        ];
        for (msg, want) in cases {
            let mut c = client_after_first();
            c.handle_server_first(b"r=abcS,s=QQ==,i=1").unwrap();
            assert_eq!(c.verify_server_final(msg), Err(*want));
            assert!(!c.is_authenticated());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let creds = ScramCredentials::derive(ScramHash::Sha1, "pw", b"salt", 1).unwrap();
        let mut inputs: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![b','; 100],
            vec![b'='; 100],
            b"n,,n=,r=".to_vec(),
            b",,,".to_vec(),
            b"p=,".to_vec(),
            b"n,a==,n=u,r=x".to_vec(),
            b"n,,n=u=,r=x".to_vec(),
            b"n,,n=u=3,r=x".to_vec(),
            b"c=,r=,p=".to_vec(),
            b",p=".to_vec(),
            b"c=biws,r=abcSRV,p=,p=".to_vec(),
            "n,,n=\u{10FFFF},r=\u{00e9}".as_bytes().to_vec(),
            vec![0xff; 64],
        ];
        let mut rng = rand::thread_rng();
        let alphabet = b"npyrcsivme=,a2C3D\x00\xffAQ/+-";
        for len in 0..400 {
            let v: Vec<u8> = (0..len % 48)
                .map(|_| {
                    let i = rng.next_u32() as usize % alphabet.len();
                    alphabet.get(i).copied().unwrap_or(b'x')
                })
                .collect();
            inputs.push(v);
            inputs.push(random_bytes(len % 64));
        }
        for input in &inputs {
            for mech in [Mechanism::ScramSha1, Mechanism::ScramSha1Plus] {
                let mut s = ScramServer::new(mech, cb_data(), true);
                let _ = s.handle_client_first(input);
            }
            let _ = server_after_first(&creds).handle_client_final(input);
            let mut prefixed = b"c=biws,r=abcSRV,".to_vec();
            prefixed.extend_from_slice(input);
            let _ = server_after_first(&creds).handle_client_final(&prefixed);
            let _ = client_after_first().handle_server_first(input);
            let mut c = client_after_first();
            c.handle_server_first(b"r=abcS,s=QQ==,i=1").unwrap();
            let _ = c.verify_server_final(input);
            let _ = super::super::parse_plain(input);
        }
    }
}
