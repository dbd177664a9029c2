"""Trust layer: OpenPGP signatures (gpg adapter), approval payloads and threshold decisions."""
