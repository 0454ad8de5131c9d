//! `ezk lab`: a local sandbox of real systemd hosts (systemd-nspawn) on a private bridge.
