//! Where the operator may send a request on a policy's behalf. A policy names URLs (its
//! Prometheus, its webhooks) but the operator holds the network position and the credentials, so
//! every such URL must match an allow-list the operator's administrators wrote.
//!
//! Matching is on the parsed URL (WHATWG rules, as `reqwest` parses it), never on the string:
//! scheme, host and port must be equal and the path must lie under the entry's path on a segment
//! boundary. Hosts are compared after IDNA (so a look-alike Unicode host is a different host) and a
//! trailing dot is kept (`prom.` is not `prom`: an absolute name skips the DNS search list). URLs
//! with user info (`http://allowed@evil/`), a fragment, control characters or an encoded `/`, `\`
//! or `.` in the path are refused outright.
//!
//! An allow-list may also admit any public HTTPS destination ([`AllowList::allow_public`]); such a
//! URL is then refused when its host is, or resolves to, an internal address (loopback, private,
//! link-local and cloud metadata, carrier-grade NAT, multicast, ...). The resolved addresses are
//! checked at connection time by [`PublicOnlyResolver`], so a DNS answer that changes between the
//! check and the connection does not get through.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use reqwest::Url;

/// Why a URL was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not a URL the operator can use at all.
    #[error("{url} is not a usable URL: {why}")]
    Malformed {
        /// The URL, shortened and without user info.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// A well-formed URL outside the allow-list.
    #[error(
        "{url} is not allowed for {list}: the operator allows {allowed}; its administrators can add it with {flag}"
    )]
    NotAllowed {
        /// The URL, without user info.
        url: String,
        /// What the URL is for (`Prometheus`, `webhooks`).
        list: &'static str,
        /// The allow-list, for the message.
        allowed: String,
        /// The operator flag that extends the list.
        flag: &'static str,
    },
    /// A public-only destination whose host is an internal address.
    #[error("{url} points to the internal address {addr}; only explicitly allow-listed URLs may")]
    Internal {
        /// The URL, without user info.
        url: String,
        /// The internal address.
        addr: IpAddr,
    },
}

impl Refusal {
    /// A bounded category, used as a condition reason and metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "URLMalformed",
            Self::NotAllowed { .. } => "URLNotAllowed",
            Self::Internal { .. } => "URLInternalAddress",
        }
    }
}

/// How an allowed URL must be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// It matches an allow-list entry: reach it normally (internal addresses allowed).
    Listed,
    /// It is allowed only as a public destination: connect through [`PublicOnlyResolver`].
    Public,
}

/// A URL that passed [`AllowList::check`]: send the request to `url` (not to the original string).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// The parsed, normalised URL.
    pub url: Url,
    /// How to reach it.
    pub route: Route,
}

/// One allow-list entry: `scheme://host[:port][/path]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlPrefix {
    scheme: String,
    host: String,
    port: u16,
    path: String,
}

impl UrlPrefix {
    /// Parses an entry. It must be an `http` or `https` URL without user info, query or fragment.
    pub fn parse(s: &str) -> Result<Self, Refusal> {
        let url = parse_http(s)?;
        if url.query().is_some() {
            return Err(malformed(s, "an allow-list entry cannot have a query"));
        }
        let (host, port) = host_port(&url, s)?;
        Ok(Self {
            scheme: url.scheme().to_string(),
            host,
            port,
            path: url.path().to_string(),
        })
    }

    fn matches(&self, url: &Url, host: &str, port: u16) -> bool {
        url.scheme() == self.scheme
            && host == self.host
            && port == self.port
            && path_within(url.path(), &self.path)
    }
}

impl fmt::Display for UrlPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}:{}{}",
            self.scheme, self.host, self.port, self.path
        )
    }
}

/// Whether `path` is `prefix` or below it, on a `/` boundary (`/a` covers `/a/b`, not `/ab`).
fn path_within(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// The URLs the operator may send requests to for one purpose.
#[derive(Clone, Debug)]
pub struct AllowList {
    list: &'static str,
    flag: &'static str,
    entries: Vec<UrlPrefix>,
    public: bool,
}

impl AllowList {
    /// An allow-list for `list` (used in messages: `Prometheus`, `webhooks`), extended by `flag`.
    pub fn new(list: &'static str, flag: &'static str, entries: Vec<UrlPrefix>) -> Self {
        Self {
            list,
            flag,
            entries,
            public: false,
        }
    }

    /// Parses entries given on the command line.
    pub fn parse(
        list: &'static str,
        flag: &'static str,
        entries: &[String],
    ) -> Result<Self, Refusal> {
        let entries = entries
            .iter()
            .map(|e| UrlPrefix::parse(e))
            .collect::<Result<_, _>>()?;
        Ok(Self::new(list, flag, entries))
    }

    /// Also admits any `https` URL whose host is not (and does not resolve to) an internal address.
    pub fn allow_public(mut self, yes: bool) -> Self {
        self.public = yes;
        self
    }

    /// Adds an entry.
    pub fn push(&mut self, entry: UrlPrefix) {
        if !self.entries.contains(&entry) {
            self.entries.push(entry);
        }
    }

    /// The entries.
    pub fn entries(&self) -> &[UrlPrefix] {
        &self.entries
    }

    /// Whether public destinations are admitted.
    pub fn admits_public(&self) -> bool {
        self.public
    }

    /// Checks `url` against the list; on success, send the request to the returned URL.
    pub fn check(&self, url: &str) -> Result<Checked, Refusal> {
        let parsed = parse_http(url)?;
        let (host, port) = host_port(&parsed, url)?;
        if self.entries.iter().any(|e| e.matches(&parsed, &host, port)) {
            return Ok(Checked {
                url: parsed,
                route: Route::Listed,
            });
        }
        if self.public && parsed.scheme() == "https" {
            let literal = host.trim_start_matches('[').trim_end_matches(']');
            if let Some(addr) = literal.parse::<IpAddr>().ok().filter(|a| is_internal(*a)) {
                return Err(Refusal::Internal {
                    url: shown(&parsed),
                    addr,
                });
            }
            return Ok(Checked {
                url: parsed,
                route: Route::Public,
            });
        }
        let mut allowed: Vec<String> = self.entries.iter().map(|e| e.to_string()).collect();
        if self.public {
            allowed.push("public https destinations".into());
        }
        Err(Refusal::NotAllowed {
            url: shown(&parsed),
            list: self.list,
            allowed: if allowed.is_empty() {
                "none".into()
            } else {
                format!("only {}", allowed.join(", "))
            },
            flag: self.flag,
        })
    }
}

/// Parses an `http`/`https` URL the operator may use, refusing every form that could make the
/// string say one destination and the request go to another.
fn parse_http(s: &str) -> Result<Url, Refusal> {
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(malformed(s, "it contains whitespace or control characters"));
    }
    let url = Url::parse(s).map_err(|e| malformed(s, &e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(malformed(s, "the scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(malformed(
            s,
            "user info (user@ or user:password@) is not allowed; credentials belong in a Secret",
        ));
    }
    if url.fragment().is_some() {
        return Err(malformed(s, "a fragment (#...) is not allowed"));
    }
    let lower = url.path().to_ascii_lowercase();
    if ["%2f", "%5c", "%2e"].iter().any(|e| lower.contains(e)) {
        return Err(malformed(
            s,
            "an encoded '/', '\\' or '.' in the path is not allowed",
        ));
    }
    Ok(url)
}

fn host_port(url: &Url, s: &str) -> Result<(String, u16), Refusal> {
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| malformed(s, "it has no host"))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| malformed(s, "it has no port"))?;
    Ok((host.to_string(), port))
}

fn malformed(s: &str, why: &str) -> Refusal {
    // Never echo user info; keep the message short.
    let url = match Url::parse(s) {
        Ok(u) => shown(&u),
        Err(_) => crate::bounded::truncate(&s.escape_debug().to_string(), 200).into_owned(),
    };
    Refusal::Malformed {
        url,
        why: why.to_string(),
    }
}

/// A URL as shown in messages: user info replaced, at most 200 bytes.
fn shown(u: &Url) -> String {
    let mut u = u.clone();
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_username("***");
        let _ = u.set_password(None);
    }
    crate::bounded::truncate(u.as_str(), 200).into_owned()
}

/// Whether `ip` is not a public unicast address: loopback, private, link-local (which holds the
/// cloud metadata endpoints), carrier-grade NAT, unspecified, multicast, broadcast, reserved,
/// documentation and benchmark ranges; IPv6 forms that embed an IPv4 address are judged by it.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_internal(v4),
        IpAddr::V6(v6) => v6_internal(v6),
    }
}

fn v4_internal(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // 100.64.0.0/10 carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // 192.0.0.0/24 IETF (Oracle metadata 192.0.0.192)
        || (a == 198 && (b == 18 || b == 19)) // 198.18.0.0/15 benchmarking
        || a >= 240 // 240.0.0.0/4 reserved
}

fn v6_internal(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_internal(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_unicast_link_local() // fe80::/10
        || ip.is_unique_local() // fc00::/7, e.g. fd00:ec2::254 (AWS metadata)
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10 deprecated site-local
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // 100::/64 discard
        // ::a.b.c.d (IPv4-compatible, deprecated) and 64:ff9b::a.b.c.d (NAT64)
        || (s[..6] == [0; 6] && v4_internal(embedded(s[6], s[7])))
        || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && v4_internal(embedded(s[6], s[7])))
        // 2002:a.b.c.d::/48 (6to4)
        || (s[0] == 0x2002 && v4_internal(embedded(s[1], s[2])))
}

/// Reads a body chunk by chunk, stopping as soon as it exceeds `cap` bytes (`None`), so an
/// oversized answer never sits whole in memory.
pub async fn read_capped(
    resp: &mut reqwest::Response,
    cap: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if resp.content_length().is_some_and(|l| l > cap as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > cap {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// A DNS resolver that fails when a name resolves to any internal address; used for
/// [`Route::Public`] destinations so the addresses actually connected to are the ones checked.
#[derive(Clone, Copy, Debug, Default)]
pub struct PublicOnlyResolver;

/// A name resolved to an internal address.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to the internal address {addr}; only explicitly allow-listed URLs may")]
pub struct InternalAddress {
    host: String,
    addr: IpAddr,
}

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(a) = addrs.iter().find(|a| is_internal(a.ip())) {
                return Err(Box::new(InternalAddress { host, addr: a.ip() }) as _);
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        let e: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        AllowList::parse("Prometheus", "--prometheus-allow", &e).expect("valid entries")
    }

    fn allowed(l: &AllowList, url: &str) -> bool {
        l.check(url).is_ok()
    }

    #[test]
    fn exact_origin_and_path_prefix() {
        let l = list(&[
            "http://prometheus.monitoring:9090",
            "https://thanos.example.com/tenant-a",
        ]);
        for ok in [
            "http://prometheus.monitoring:9090",
            "http://prometheus.monitoring:9090/",
            "http://PROMETHEUS.Monitoring:9090/prefix",
            "https://thanos.example.com/tenant-a",
            "https://thanos.example.com/tenant-a/",
            "https://thanos.example.com:443/tenant-a/api",
            "https://thanos.example.com/tenant-a/x/../y", // normalised to /tenant-a/y
        ] {
            assert!(allowed(&l, ok), "{ok} should be allowed");
        }
        for bad in [
            "http://prometheus.monitoring:9091",
            "http://prometheus.monitoring",       // port 80
            "https://prometheus.monitoring:9090", // other scheme
            "http://prometheus.monitoring.evil:9090",
            "http://evil.prometheus.monitoring:9090",
            "http://prometheus.monitoringx:9090",
            "http://prometheus.monitoring.:9090", // trailing dot: another name
            "http://evil/?u=http://prometheus.monitoring:9090",
            "https://thanos.example.com/tenant-ab",
            "https://thanos.example.com/tenant-a/../tenant-b", // normalised out of the prefix
            "https://thanos.example.com/tenant-a/%2e%2e/tenant-b", // likewise
            "https://thanos.example.com/tenant-a/%2E./tenant-b",
            "https://thanos.example.com/",
            "http://thanos.example.com/tenant-a", // plaintext
            "https://thanos.example.com:8443/tenant-a",
        ] {
            assert!(!allowed(&l, bad), "{bad} should be refused");
        }
    }

    #[test]
    fn hostile_forms_are_refused() {
        let l = list(&["http://allowed:9090"]);
        let malformed = [
            "http://allowed:9090@evil/",
            "http://allowed@evil:9090/",
            "http://user:pass@allowed:9090/",
            "http://allowed:9090/#@evil",
            "http://allowed:9090/a%2Fb",
            "http://allowed:9090/a%5cb",
            " http://allowed:9090/",
            "http://allowed:9090/\n",
            "http://allo\twed:9090/",
            "ftp://allowed:9090/",
            "file:///etc/passwd",
            "gopher://allowed:9090/",
            "javascript:alert(1)",
            "allowed:9090",
            "//allowed:9090",
            "",
            "http://",
            "http://[::1",
        ];
        for m in malformed {
            let e = l.check(m).expect_err(m);
            assert_eq!(e.reason(), "URLMalformed", "{m}: {e}");
        }
        for other in [
            "http://evil\\@allowed:9090/", // backslash is a slash: host evil
            "http://evil#@allowed:9090/",
            "http://xn--llowed-0ve:9090/", // punycode look-alike
            "http://аllowed:9090/",        // Cyrillic а
            "http://allowed%2eevil:9090/", // decoded host allowed.evil
            "http://0x7f000001:9090/",
        ] {
            assert!(!allowed(&l, other), "{other} should be refused");
        }
        // Never echo a password.
        let e = l
            .check("http://u:hunter2@allowed:9090/")
            .expect_err("user info");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn equivalent_spellings_of_a_listed_host_match() {
        let l = list(&[
            "http://127.0.0.1:9090",
            "http://[::1]:9090",
            "https://bücher.example",
        ]);
        for ok in [
            "http://127.1:9090/",
            "http://127.0.0.1.:9090/", // an IPv4 literal may end with a dot
            "http://2130706433:9090/",
            "http://0x7f.0.0.1:9090/",
            "http://[0:0:0:0:0:0:0:1]:9090/",
            "https://xn--bcher-kva.example/",
            "https://BÜCHER.example/",
            "https://ｂücher.example/", // fullwidth b maps to b (IDNA)
        ] {
            assert!(allowed(&l, ok), "{ok} should be allowed");
        }
    }

    #[test]
    fn an_empty_list_allows_nothing() {
        let l = AllowList::new("webhooks", "--webhook-allow", vec![]);
        let e = l
            .check("https://hooks.slack.com/services/x")
            .expect_err("denied");
        assert_eq!(e.reason(), "URLNotAllowed");
        assert!(e.to_string().contains("--webhook-allow"), "{e}");
        assert!(e.to_string().contains("the operator allows none"), "{e}");
    }

    #[test]
    fn public_mode_refuses_internal_literals_and_plaintext() {
        let l = AllowList::new("webhooks", "--webhook-allow", vec![]).allow_public(true);
        assert_eq!(
            l.check("https://hooks.slack.com/services/x")
                .expect("public")
                .route,
            Route::Public
        );
        for internal in [
            "https://169.254.169.254/latest/meta-data/",
            "https://[fd00:ec2::254]/",
            "https://[::ffff:169.254.169.254]/",
            "https://[::ffff:a9fe:a9fe]/",
            "https://[64:ff9b::a9fe:a9fe]/",
            "https://[2002:a9fe:a9fe::1]/",
            "https://127.0.0.1/",
            "https://10.0.0.1/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[::]/",
            "https://[::1]/",
            "https://[fe80::1]/",
            "https://192.0.0.192/",
            "https://2852039166/", // 169.254.169.254 as one number
        ] {
            let e = l.check(internal).expect_err(internal);
            assert_eq!(e.reason(), "URLInternalAddress", "{internal}: {e}");
        }
        assert_eq!(
            l.check("http://hooks.slack.com/x")
                .expect_err("plaintext")
                .reason(),
            "URLNotAllowed"
        );
        // A listed internal URL is still allowed, and reached normally.
        let mut l = l;
        l.push(UrlPrefix::parse("http://alertmanager.monitoring:9093/").expect("entry"));
        assert_eq!(
            l.check("http://alertmanager.monitoring:9093/api")
                .expect("listed")
                .route,
            Route::Listed
        );
    }

    #[test]
    fn public_addresses_are_not_internal() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "100.128.0.1",
            "172.32.0.1",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert!(!is_internal(ip), "{ip}");
        }
    }

    #[test]
    fn entries_are_validated() {
        for bad in [
            "http://p:9090/?x=1",
            "http://u@p:9090",
            "p:9090",
            "http://p:9090/#f",
        ] {
            assert!(UrlPrefix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_boundaries() {
        assert!(path_within("/a", "/a"));
        assert!(path_within("/a/b", "/a"));
        assert!(path_within("/a/b", "/a/"));
        assert!(!path_within("/ab", "/a"));
        assert!(!path_within("/a", "/a/"));
        assert!(path_within("/anything", "/"));
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_internal_addresses() {
        use reqwest::dns::Resolve as _;
        let name: reqwest::dns::Name = "localhost".parse().expect("name");
        let err = PublicOnlyResolver
            .resolve(name)
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains("internal address"), "{err}");
    }
}
