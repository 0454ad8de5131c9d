//! Lab networking: one bridge and one /24 per lab inside 198.18.0.0/15 (RFC 2544 benchmark
//! space, never routed), the bridge holding .1, hosts from .11, the VIP at .250. Nothing else is
//! touched: no default route on hosts, no forwarding or NAT, the machine's ip_forward and
//! iptables are left as they are.

use std::net::Ipv4Addr;

use super::{LabError, LabPaths, sys};
use super::state::LabState;

/// Highest subnet index N in 198.18.N.0/24.
pub const MAX_INDEX: u8 = 250;
/// Most hosts in one lab (.11 ..= .210, below the VIP).
pub const MAX_HOSTS: usize = 200;
/// First host address's last octet.
pub const FIRST_HOST: u8 = 11;
/// The VIP's last octet.
pub const VIP_OCTET: u8 = 250;

/// Bridge name for subnet N (≤ 15 chars).
pub fn bridge_name(index: u8) -> String {
    format!("ezkbr{index}")
}

/// Address of host `i` (0-based).
pub fn host_ip(index: u8, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, index, FIRST_HOST + i as u8)
}

/// The bridge's address (the deploy machine's side).
pub fn bridge_ip(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, index, 1)
}

/// The ex_lb VIP of a lab.
pub fn vip(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, index, VIP_OCTET)
}

/// Pick the lowest free N: not recorded by another lab, no bridge of that name, no address in
/// that /24 on any interface of this machine. The caller holds the allocation lock until the
/// new state file (which records N) is saved.
pub fn allocate(paths: &LabPaths) -> Result<u8, LabError> {
    let used: Vec<u8> = LabState::list(paths)
        .iter()
        .filter_map(|n| LabState::load(paths, n).ok().flatten())
        .map(|s| s.index)
        .collect();
    let addrs = sys::run_args("ip", &["-4", "-o", "addr", "show"]).unwrap_or_default();
    (1..=MAX_INDEX)
        .find(|&n| {
            !used.contains(&n) && !sys::link_exists(&bridge_name(n)) && !addrs.contains(&format!(" 198.18.{n}."))
        })
        .ok_or(LabError::NoFreeSubnet)
}

/// Create the bridge with address .1/24 and bring it up.
pub fn create_bridge(index: u8) -> Result<(), LabError> {
    let br = bridge_name(index);
    if !sys::link_exists(&br) {
        sys::run_args("ip", &["link", "add", "name", &br, "type", "bridge"])?;
    }
    let addr = format!("{}/24", bridge_ip(index));
    let shown = sys::run_args("ip", &["-4", "-o", "addr", "show", "dev", &br])?;
    if !shown.contains(&addr) {
        sys::run_args("ip", &["addr", "add", &addr, "dev", &br])?;
    }
    sys::run_args("ip", &["link", "set", &br, "up"])?;
    Ok(())
}

/// Delete an interface if it exists.
pub fn delete_link(name: &str) -> Result<(), LabError> {
    if sys::link_exists(name) {
        sys::run_args("ip", &["link", "del", name])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(host_ip(7, 0).to_string(), "198.18.7.11");
        assert_eq!(host_ip(7, MAX_HOSTS - 1).octets()[3], 210);
        assert!(host_ip(7, MAX_HOSTS - 1).octets()[3] < VIP_OCTET);
        assert_eq!(bridge_name(MAX_INDEX).len(), 8);
        assert_eq!(vip(3).to_string(), "198.18.3.250");
    }
}
