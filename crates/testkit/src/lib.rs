//! Test support: start the `switchboard` binary on loopback and wait on conditions.
