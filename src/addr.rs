//! Addresses and names: IPs, CIDRs, host names, DNS-1123 node names and domains, interface
//! names, ssh jump hops. A leaf module shared by
//! inventory validation (`inventory::validate`) and the Jinja filters (`template`), so neither
//! has to import the other for address arithmetic.

use std::net::IpAddr;

/// An IP network (`10.68.0.0/16`), normalised to its network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Parse `a.b.c.d/n` or an IPv6 `x::/n`.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (want address/prefix)"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| format!("{p:?} is not a prefix length 0..{max}"))?;
        Ok(Cidr {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// The n-th address of the network (the first service IP is `nth(1)`).
    pub fn nth(&self, n: u128) -> Option<IpAddr> {
        match self.addr {
            IpAddr::V4(a) => u32::try_from(u128::from(u32::from(a)) + n)
                .ok()
                .map(|x| IpAddr::V4(x.into())),
            IpAddr::V6(a) => u128::from(a).checked_add(n).map(|x| IpAddr::V6(x.into())),
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// True for something that looks like an IPv4 address attempt (digits and dots only).
pub fn looks_like_ipv4(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// A valid host name (RFC 1123 labels; upper case allowed, as SSH and DNS accept it).
pub fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !looks_like_ipv4(s)
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// A Kubernetes node name: a DNS-1123 subdomain (lower-case alphanumerics, '-' and '.', each
/// label starting and ending alphanumeric, at most 253 characters).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// A DNS name as certificates and cluster domains need it: RFC 1123 labels of lower-case
/// letters, digits and '-' (not at either end), each at most 63 characters, at most 253 in all.
pub fn is_dns_name(s: &str) -> bool {
    is_dns1123_subdomain(s) && s.split('.').all(|l| l.len() <= 63)
}

/// A Linux network interface name (`eth0`, `ens3`, `bond0.100`): 1-15 bytes, none of them '/',
/// ':' or whitespace.
pub fn is_interface_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

/// `[user@]host[:port]`, one hop of an ssh jump (`-J`, ProxyJump): what is wrong with it
/// (the caller names the hop).
pub fn jump_problem(hop: &str) -> Option<String> {
    let (user, rest) = match hop.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, hop),
    };
    if user.is_some_and(|u| {
        u.is_empty()
            || !u
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    }) {
        return Some("the user is not a valid user name".into());
    }
    // `host:port`, `[v6]:port` or a bare host / IPv6 address.
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return Some("it has a [ without ]".into()),
        }
    } else if rest.matches(':').count() == 1 {
        let (h, p) = rest.split_once(':').unwrap_or((rest, ""));
        (h, Some(p))
    } else {
        (rest, None)
    };
    if host.parse::<IpAddr>().is_err() && !is_hostname(host) {
        return Some(format!("{host:?} is not an IP address or host name"));
    }
    if let Some(p) = port
        && !matches!(p.parse::<u16>(), Ok(n) if n > 0 && !p.starts_with('0'))
    {
        return Some(format!("port {p:?} is not a port number (1-65535)"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let a = Cidr::parse("10.68.0.0/16").unwrap();
        let b = Cidr::parse("10.68.128.0/17").unwrap();
        let c = Cidr::parse("172.20.0.0/16").unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        assert!(a.contains("10.68.3.4".parse().unwrap()));
        assert_eq!(
            Cidr::parse("10.68.1.1/16").unwrap().to_string(),
            "10.68.0.0/16"
        );
        assert_eq!(a.nth(1).unwrap().to_string(), "10.68.0.1");
        assert!(Cidr::parse("10.68.0.0").is_err());
        assert!(Cidr::parse("10.68.0.0/33").is_err());
        assert!(
            Cidr::parse("fd00::/8")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
    }

    #[test]
    fn names() {
        assert!(is_hostname("node-1.example.com"));
        assert!(
            !is_hostname("198.51.100.300"),
            "a broken IP is not a host name"
        );
        assert!(!is_hostname("bad_host"));
        assert!(is_dns1123_subdomain("k8s-198-51-100-1"));
        assert!(!is_dns1123_subdomain("Master_1"));
        assert!(!is_dns1123_subdomain("-a"));
        assert!(is_dns_name("cluster.local"));
        assert!(
            !is_dns_name(&"a".repeat(64)),
            "a label is at most 63 characters"
        );
        assert!(!is_dns_name("Cluster.local") && !is_dns_name("a_b.test") && !is_dns_name("a..b"));
        assert!(is_interface_name("eth0") && is_interface_name("bond0.100"));
        assert!(
            !is_interface_name("eth0:1")
                && !is_interface_name("a b")
                && !is_interface_name("averyverylongname0")
        );
    }

    #[test]
    fn jump_hops() {
        for ok in [
            "bastion",
            "ops@bastion.example.test:2222",
            "198.51.100.1",
            "[2001:db8::1]:22",
            "2001:db8::1",
        ] {
            assert_eq!(jump_problem(ok), None, "{ok}");
        }
        for bad in [
            "@bastion",
            "a b@host",
            "bastion:0",
            "bastion:99999",
            "host_1",
            "[::1",
        ] {
            assert!(jump_problem(bad).is_some(), "{bad}");
        }
    }
}
