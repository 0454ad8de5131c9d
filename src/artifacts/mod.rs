//! Artifact store: pinned manifest with sha256, download (reqwest), mirror, offline bundle.
