//! CORS, as Fluentd's `in_http` does it: `http.cors_allow_origins` (`*`,
//! exact origins, or one `*` wildcard inside an origin), preflight
//! `OPTIONS` answered for `POST`, and the allow headers on every answer to
//! an allowed origin.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

/// The CORS rules of the HTTP input; empty: CORS off (browsers' cross-origin
/// posts are refused, other clients unaffected).
#[derive(Debug, Clone, Default)]
pub(super) struct Cors {
    origins: Vec<String>,
    credentials: bool,
}

impl Cors {
    pub(super) fn new(origins: &[String], credentials: bool) -> Self {
        Self {
            origins: origins.to_vec(),
            credentials,
        }
    }

    fn enabled(&self) -> bool {
        !self.origins.is_empty()
    }

    fn any(&self) -> bool {
        self.origins.iter().any(|o| o == "*")
    }

    /// Whether `origin` is one of the allowed ones (named or by wildcard).
    fn listed(&self, origin: &str) -> bool {
        self.origins
            .iter()
            .filter(|o| !o.is_empty())
            .any(|o| match o.split_once('*') {
                None => o == origin,
                Some((start, end)) => {
                    origin.len() >= start.len() + end.len()
                        && origin.starts_with(start)
                        && origin.ends_with(end)
                }
            })
    }

    /// Whether a POST with this `Origin` is taken: always when CORS is off
    /// or the request names no origin (not a browser's cross-origin post).
    pub(super) fn allows(&self, origin: Option<&HeaderValue>) -> bool {
        let Some(origin) = origin.and_then(|o| o.to_str().ok()) else {
            return true;
        };
        !self.enabled() || self.any() || self.listed(origin)
    }

    /// The answer to a preflight `OPTIONS`.
    pub(super) fn preflight(&self, headers: &HeaderMap) -> Response<Full<Bytes>> {
        let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
        let method = headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| m.to_str().ok());
        let allowed = self.enabled()
            && method == Some("POST")
            && (self.any() || origin.is_some_and(|o| self.listed(o)));
        let mut r = Response::new(Full::new(Bytes::new()));
        if !allowed {
            *r.status_mut() = StatusCode::FORBIDDEN;
            return r;
        }
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        if let Some(asked) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
        }
        r
    }

    /// Adds `Access-Control-Allow-Origin` (and `-Credentials`) to an answer
    /// for an allowed origin.
    pub(super) fn add_headers(&self, origin: Option<&HeaderValue>, h: &mut HeaderMap) {
        if !self.enabled() {
            return;
        }
        if self.any() {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            return;
        }
        let Some(o) = origin.filter(|o| o.to_str().is_ok_and(|s| self.listed(s))) else {
            return;
        };
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_by_name_or_one_wildcard() {
        let c = Cors::new(
            &[
                "https://*.example.com".into(),
                "http://localhost:3000".into(),
            ],
            true,
        );
        let hv = |s: &'static str| HeaderValue::from_static(s);
        assert!(c.allows(Some(&hv("https://app.example.com"))));
        assert!(c.allows(Some(&hv("http://localhost:3000"))));
        assert!(!c.allows(Some(&hv("https://example.org"))));
        assert!(c.allows(None));
        let mut h = HeaderMap::new();
        c.add_headers(Some(&hv("https://app.example.com")), &mut h);
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    }

    #[test]
    fn preflight_is_answered_only_for_allowed_posts() {
        let c = Cors::new(&["*".into()], false);
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_static("https://x"));
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        assert_eq!(c.preflight(&h).status(), StatusCode::OK);
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("PUT"),
        );
        assert_eq!(c.preflight(&h).status(), StatusCode::FORBIDDEN);
        assert_eq!(
            Cors::default().preflight(&h).status(),
            StatusCode::FORBIDDEN
        );
    }
}
