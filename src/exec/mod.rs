//! SSH executor: `Transport` trait, SSH implementation (openssh), runner (gather → diff → apply).
