//! In-process PKI (rcgen): CAs, component certificates, kubeconfigs under clusters/<name>/ssl/.
