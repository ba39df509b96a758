//! Helpers shared by the end-to-end tests: the binary, the shipped files, exports.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `jizhi-tune` binary under test.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jizhi-tune"));
    c.env_remove("JIZHI_IMAGENET_DIR");
    c
}

/// A file of the shipped `search-spaces/` folder.
pub fn space(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../search-spaces").join(name)
}

/// Runs a command and returns its output, panicking with its stderr if it could not start.
pub fn run(c: &mut Command) -> Output {
    match c.output() {
        Ok(o) => o,
        Err(e) => panic!("could not run {c:?}: {e}"),
    }
}

/// Text of stdout and stderr.
pub fn texts(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// The JSON export of a store.
pub fn export(store: &Path) -> Vec<serde_json::Value> {
    let out = run(bin().args(["export", "--format", "json"]).arg(store));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "export failed: {stderr}");
    match serde_json::from_str::<serde_json::Value>(&stdout) {
        Ok(serde_json::Value::Array(a)) => a,
        other => panic!("export is not a JSON array: {other:?}\n{stdout}"),
    }
}
