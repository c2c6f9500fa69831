//! Human-friendly config values: durations ("10m") and sizes ("64MiB").

use std::fmt;
use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as "90s", "10m", "1h".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| de::Error::custom(format!("{s:?} is not a duration like \"10m\" ({e})")))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// A byte count written as an integer or "512KiB", "64MiB", "1GiB" (also KB/MB/GB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub(crate) fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v >= 1 << 30 && v.is_multiple_of(1 << 30) {
            write!(f, "{}GiB", v >> 30)
        } else if v >= 1 << 20 && v.is_multiple_of(1 << 20) {
            write!(f, "{}MiB", v >> 20)
        } else if v >= 1 << 10 && v.is_multiple_of(1 << 10) {
            write!(f, "{}KiB", v >> 10)
        } else {
            write!(f, "{v}")
        }
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Str(s) => parse_size(&s).map(ByteSize).ok_or_else(|| {
                de::Error::custom(format!("{s:?} is not a size like \"64MiB\" or 1048576"))
            }),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("2 GB"), Some(2_000_000_000));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
    }
}

/// A listen address: `host:port`, the host an IP address or a name resolved
/// once, at load (`0.0.0.0:24224`, `localhost:24224`, `weir-0.weir:24224`).
///
/// # Errors
/// Not `host:port`, or a name that does not resolve; a path (a Unix socket)
/// says how to serve one.
pub(crate) fn listen_addr<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::net::SocketAddr, D::Error> {
    use serde::de::Error;
    let s = String::deserialize(d)?;
    parse_listen(&s).map_err(D::Error::custom)
}

pub(crate) fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    if s.starts_with('/') || s.starts_with("unix:") {
        return Err(format!(
            "{s:?}: a Unix socket is not a `listen` address; weir serves forward on TCP host:port (Unix sockets: a later release's forward.unix_path)"
        ));
    }
    if s.rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err(format!(
            "{s:?}: expected host:port, e.g. \"0.0.0.0:24224\" or \"weir.internal:24224\""
        ));
    }
    match s.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{s:?}: the host name resolves to no address")),
        Err(e) => Err(format!("{s:?}: cannot resolve the host name: {e}")),
    }
}

#[cfg(test)]
mod listen_tests {
    use super::parse_listen;

    #[test]
    fn listen_takes_addresses_and_host_names() {
        assert_eq!(parse_listen("0.0.0.0:24224").unwrap().port(), 24224);
        assert!(parse_listen("localhost:24224").unwrap().ip().is_loopback());
        assert!(parse_listen("[::1]:9").is_ok());
        let e = parse_listen("/run/weir.sock").unwrap_err();
        assert!(e.contains("Unix socket"), "{e}");
        assert!(parse_listen("24224").unwrap_err().contains("host:port"));
        assert!(parse_listen("nowhere.invalid:1")
            .unwrap_err()
            .contains("resolve"));
    }
}
