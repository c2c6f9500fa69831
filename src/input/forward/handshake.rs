//! The shared-key handshake (forward-protocol.md §6): the server speaks
//! first with HELO, the client answers PING, the server replies PONG and,
//! on failure, closes. No events are accepted before a good PING.
//!
//! Digests are `hex(sha512(...))`, lower case. Salts are hashed as the raw
//! bytes the client sent (Fluentd sends hex text, Fluent Bit raw bytes).

use std::net::IpAddr;
use std::time::Duration;

use rand::RngCore;
use sha2::{Digest, Sha512};

use crate::input::forward::config::SecurityConfig;
use crate::msgpack::{Cursor, Head, MsgpackError};

/// Why a handshake failed. `reason()` is what PONG tells the client (the
/// same words as Fluentd); `label()` is the metric label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    InvalidPing,
    AnonymousDenied(IpAddr),
    SharedKeyMismatch,
    UserMismatch,
    Timeout,
    Closed,
}

impl Failure {
    pub(crate) fn reason(&self) -> String {
        match self {
            Failure::InvalidPing => "invalid ping message".into(),
            Failure::AnonymousDenied(ip) => format!("anonymous source host '{ip}' denied"),
            Failure::SharedKeyMismatch => "shared_key mismatch".into(),
            Failure::UserMismatch => "username/password mismatch".into(),
            Failure::Timeout => "handshake timed out".into(),
            Failure::Closed => "connection closed during handshake".into(),
        }
    }

    pub(crate) fn label(&self) -> &'static str {
        match self {
            Failure::InvalidPing => "invalid_ping",
            Failure::AnonymousDenied(_) => "anonymous_denied",
            Failure::SharedKeyMismatch => "shared_key_mismatch",
            Failure::UserMismatch => "user_mismatch",
            Failure::Timeout => "timeout",
            Failure::Closed => "closed",
        }
    }

    /// Failures worth a PONG (the client is still listening).
    pub(crate) fn send_pong(&self) -> bool {
        !matches!(self, Failure::Timeout | Failure::Closed)
    }
}

/// `hex(sha512(part ‖ part ‖ …))`.
pub fn sha512_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The server's per-connection secrets, sent in HELO.
pub struct Challenge {
    pub(crate) nonce: [u8; 16],
    pub(crate) auth_salt: [u8; 16],
}

impl Challenge {
    pub fn new() -> Self {
        let mut rng = rand::rng();
        let mut c = Self {
            nonce: [0; 16],
            auth_salt: [0; 16],
        };
        rng.fill_bytes(&mut c.nonce);
        rng.fill_bytes(&mut c.auth_salt);
        c
    }

    /// `["HELO", {"nonce": bin, "auth": bin, "keepalive": bool}]`.
    pub(crate) fn helo(&self, keepalive: bool) -> Vec<u8> {
        super::messages::helo(&super::messages::HeloOptions {
            nonce: self.nonce.to_vec(),
            auth: self.auth_salt.to_vec(),
            keepalive,
        })
    }
}

impl Default for Challenge {
    fn default() -> Self {
        Self::new()
    }
}

/// A successful PING's details, for PONG.
pub struct Accepted {
    pub(crate) client_hostname: String,
    salt: Vec<u8>,
    shared_key: String,
}

struct Ping<'a> {
    hostname: &'a [u8],
    salt: &'a [u8],
    digest: &'a [u8],
    username: &'a [u8],
    password_digest: &'a [u8],
}

fn parse_ping(frame: &[u8]) -> Result<Ping<'_>, MsgpackError> {
    let mut c = Cursor::new(frame);
    let mut fields: [&[u8]; 6] = [&[]; 6];
    if c.head()? != Head::Array(6) {
        return Err(MsgpackError::Truncated);
    }
    for f in fields.iter_mut() {
        *f = c.bytes()?.ok_or(MsgpackError::Truncated)?;
    }
    if fields[0] != b"PING" {
        return Err(MsgpackError::Truncated);
    }
    Ok(Ping {
        hostname: fields[1],
        salt: fields[2],
        digest: fields[3],
        username: fields[4],
        password_digest: fields[5],
    })
}

fn rule_matches(rule: &crate::input::forward::config::ClientRule, ip: IpAddr) -> bool {
    if let Some(h) = rule.host {
        return h == ip;
    }
    rule.network.is_some_and(|n| n.contains(&ip))
}

/// Checks a PING as Fluentd's in_forward does, in the same order.
pub fn check_ping(
    frame: &[u8],
    peer: IpAddr,
    challenge: &Challenge,
    sec: &SecurityConfig,
) -> Result<Accepted, Failure> {
    let ping = parse_ping(frame).map_err(|_| Failure::InvalidPing)?;
    let rule = sec.clients.iter().find(|r| rule_matches(r, peer));
    if rule.is_none() && !sec.allow_anonymous_source {
        return Err(Failure::AnonymousDenied(peer));
    }
    let key = rule
        .and_then(|r| r.shared_key.clone())
        .unwrap_or_else(|| sec.shared_key.clone());
    let want = sha512_hex(&[ping.salt, ping.hostname, &challenge.nonce, key.as_bytes()]);
    if !constant_time_eq(want.as_bytes(), ping.digest) {
        return Err(Failure::SharedKeyMismatch);
    }
    if sec.user_auth {
        let allowed = |name: &str| {
            rule.and_then(|r| r.users.as_ref())
                .is_none_or(|u| u.iter().any(|x| x == name))
        };
        let ok = sec.users.iter().any(|u| {
            u.username.as_bytes() == ping.username
                && allowed(&u.username)
                && constant_time_eq(
                    sha512_hex(&[
                        &challenge.auth_salt,
                        u.username.as_bytes(),
                        u.password.as_bytes(),
                    ])
                    .as_bytes(),
                    ping.password_digest,
                )
        });
        if !ok {
            return Err(Failure::UserMismatch);
        }
    }
    Ok(Accepted {
        client_hostname: String::from_utf8_lossy(ping.hostname).into_owned(),
        salt: ping.salt.to_vec(),
        shared_key: key,
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `["PONG", true, "", self_hostname, digest]`.
pub(crate) fn pong_ok(a: &Accepted, challenge: &Challenge, self_hostname: &str) -> Vec<u8> {
    let digest = sha512_hex(&[
        &a.salt,
        self_hostname.as_bytes(),
        &challenge.nonce,
        a.shared_key.as_bytes(),
    ]);
    pong(true, "", self_hostname, &digest)
}

/// `["PONG", false, reason, "", ""]`.
pub(crate) fn pong_fail(f: &Failure) -> Vec<u8> {
    pong(false, &f.reason(), "", "")
}

fn pong(ok: bool, reason: &str, host: &str, digest: &str) -> Vec<u8> {
    super::messages::pong(ok, reason, host, digest)
}

/// How long a client has to finish the handshake.
pub(crate) fn timeout(sec: &SecurityConfig) -> Duration {
    sec.handshake_timeout.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_vector_from_the_notes() {
        let nonce: Vec<u8> = (0u8..16).collect();
        let d = sha512_hex(&[b"salt0123salt0123", b"client.example", &nonce, b"secret"]);
        assert!(d.starts_with("fdf95944e6d91709b19fad5fff360b1f"), "{d}");
        assert_eq!(d.len(), 128);
    }

    fn sec(toml_text: &str) -> SecurityConfig {
        toml::from_str(toml_text).unwrap()
    }

    fn ping(host: &str, salt: &[u8], digest: &str, user: &str, pass_digest: &str) -> Vec<u8> {
        let mut b = Vec::new();
        rmp::encode::write_array_len(&mut b, 6).unwrap();
        rmp::encode::write_str(&mut b, "PING").unwrap();
        rmp::encode::write_str(&mut b, host).unwrap();
        rmp::encode::write_bin(&mut b, salt).unwrap();
        rmp::encode::write_str(&mut b, digest).unwrap();
        rmp::encode::write_str(&mut b, user).unwrap();
        rmp::encode::write_str(&mut b, pass_digest).unwrap();
        b
    }

    #[test]
    fn checks_in_fluentd_order() {
        let ch = Challenge::new();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let s = sec("self_hostname='weir'\nshared_key='k'\nuser_auth=true\nusers=[{username='u',password='p'}]");
        let good = sha512_hex(&[b"salt", b"c", &ch.nonce, b"k"]);
        let pw = sha512_hex(&[&ch.auth_salt, b"u", b"p"]);
        assert!(check_ping(&ping("c", b"salt", &good, "u", &pw), ip, &ch, &s).is_ok());
        assert_eq!(
            check_ping(&ping("c", b"salt", &"0".repeat(128), "u", &pw), ip, &ch, &s).err(),
            Some(Failure::SharedKeyMismatch)
        );
        assert_eq!(
            check_ping(&ping("c", b"salt", &good, "u", "bad"), ip, &ch, &s).err(),
            Some(Failure::UserMismatch)
        );
        assert_eq!(
            check_ping(b"\x91\xa4PING", ip, &ch, &s).err(),
            Some(Failure::InvalidPing)
        );
        let deny = sec("self_hostname='weir'\nshared_key='k'\nallow_anonymous_source=false\nclients=[{network='10.0.0.0/8'}]");
        assert_eq!(
            check_ping(&ping("c", b"salt", &good, "", ""), ip, &ch, &deny).err(),
            Some(Failure::AnonymousDenied(ip))
        );
        // A client rule can carry its own key.
        let per = sec(
            "self_hostname='weir'\nshared_key='k'\nclients=[{host='127.0.0.1',shared_key='other'}]",
        );
        let other = sha512_hex(&[b"salt", b"c", &ch.nonce, b"other"]);
        assert!(check_ping(&ping("c", b"salt", &other, "", ""), ip, &ch, &per).is_ok());
        assert!(check_ping(&ping("c", b"salt", &good, "", ""), ip, &ch, &per).is_err());
    }
}
