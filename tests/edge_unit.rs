//! `systemd/inspro.service` passes `systemd-analyze verify` (scripts/verify-unit.sh stages a root
//! with the built binary, so ExecStart= is checked too).
#![cfg(feature = "edge")]

mod edge_common;

use std::process::Command;

#[test]
fn systemd_unit_verifies() {
    let out = Command::new(edge_common::repo().join("scripts/verify-unit.sh"))
        .arg(edge_common::bin())
        .output()
        .expect("run scripts/verify-unit.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("ok"), "{text}");
}
