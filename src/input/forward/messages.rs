//! The handshake's typed messages (forward protocol v1, "Handshake
//! Messages"), encoded and decoded with rmp-serde. Event requests and their
//! acks stay on the zero-copy path (`decode.rs`, `msgpack.rs`): they are
//! per request, and an ack must echo the chunk id's exact bytes.

use serde::{Deserialize, Serialize};

/// The options of `["HELO", {...}]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HeloOptions {
    #[serde(with = "serde_bytes")]
    pub(crate) nonce: Vec<u8>,
    /// The user-authentication salt (empty when users are not checked).
    #[serde(with = "serde_bytes", default)]
    pub(crate) auth: Vec<u8>,
    #[serde(default = "yes")]
    pub(crate) keepalive: bool,
}

fn yes() -> bool {
    true
}

/// `["HELO", options]`.
pub(crate) fn helo(options: &HeloOptions) -> Vec<u8> {
    rmp_serde::to_vec_named(&("HELO", options)).unwrap_or_default()
}

/// Reads `["HELO", options]`.
pub(crate) fn parse_helo(bytes: &[u8]) -> Result<HeloOptions, String> {
    let (kind, options): (String, HeloOptions) =
        rmp_serde::from_slice(bytes).map_err(|e| format!("not a HELO: {e}"))?;
    if kind != "HELO" {
        return Err(format!("expected HELO, got {kind:?}"));
    }
    Ok(options)
}

/// `["PING", client_hostname, shared_key_salt, shared_key_hexdigest,
/// username, password_hexdigest]`, as a client sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Ping<'a>(
    pub(crate) &'static str,
    pub(crate) &'a str,
    pub(crate) &'a str,
    pub(crate) &'a str,
    pub(crate) &'a str,
    pub(crate) &'a str,
);

pub(crate) fn ping(
    hostname: &str,
    salt: &str,
    digest: &str,
    user: &str,
    password: &str,
) -> Vec<u8> {
    rmp_serde::to_vec(&Ping("PING", hostname, salt, digest, user, password)).unwrap_or_default()
}

/// `["PONG", auth_result, reason, server_hostname, shared_key_hexdigest]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pong(
    pub(crate) String,
    pub(crate) bool,
    pub(crate) String,
    pub(crate) String,
    pub(crate) String,
);

pub(crate) fn pong(ok: bool, reason: &str, host: &str, digest: &str) -> Vec<u8> {
    rmp_serde::to_vec(&("PONG", ok, reason, host, digest)).unwrap_or_default()
}

/// Reads a PONG: `Ok(())` when accepted, else the server's reason.
pub(crate) fn parse_pong(bytes: &[u8]) -> Result<Result<(), String>, String> {
    let Pong(kind, ok, reason, _, _) =
        rmp_serde::from_slice(bytes).map_err(|e| format!("not a PONG: {e}"))?;
    if kind != "PONG" {
        return Err(format!("expected PONG, got {kind:?}"));
    }
    Ok(if ok { Ok(()) } else { Err(reason) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact bytes Fluent Bit and Fluentd expect: an array, `bin` for
    /// the nonce and salt, a map with these keys.
    #[test]
    fn helo_and_pong_bytes() {
        let o = HeloOptions {
            nonce: vec![1, 2],
            auth: vec![],
            keepalive: true,
        };
        let b = helo(&o);
        let mut want = vec![0x92, 0xa4];
        want.extend(b"HELO");
        want.push(0x83);
        want.push(0xa5);
        want.extend(b"nonce");
        want.extend([0xc4, 2, 1, 2]);
        want.push(0xa4);
        want.extend(b"auth");
        want.extend([0xc4, 0]);
        want.push(0xa9);
        want.extend(b"keepalive");
        want.push(0xc3);
        assert_eq!(b, want);
        assert_eq!(parse_helo(&b).unwrap(), o);
        let p = pong(false, "no", "h", "");
        assert_eq!(parse_pong(&p).unwrap(), Err("no".to_string()));
        assert_eq!(parse_pong(&pong(true, "", "h", "d")).unwrap(), Ok(()));
        assert!(parse_pong(&helo(&o)).is_err());
        let ping = ping("c", "s", "d", "", "");
        assert_eq!(ping[0], 0x96);
    }
}
