//! SIGTERM (or Ctrl-C) to a running search: the running trial is stopped cleanly, the tuner exits
//! 130 with the command that resumes it, finished trials are kept, and that command completes the
//! rest without running a finished trial again.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn sigterm_stops_the_search_with_a_resume_hint_and_the_hint_resumes_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let space = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny.toml");
    let mut child = bin()
        .arg(&space)
        .args(["--headless", "--max-concurrent", "1", "--store"])
        .arg(&store)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the search");
    let mut stderr = child.stderr.take().expect("stderr");
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    // Stop it while trial 2 runs, trial 1 having finished.
    for line in lines.by_ref() {
        let line = line.expect("read a progress line");
        seen.push(line.clone());
        if line.contains("trial 2 started") {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("trial 1 finished")),
        "{seen:#?}"
    );
    let pid = child.id() as libc::pid_t;
    // SAFETY: sending a signal to our own child has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let stopped_at = Instant::now();
    seen.extend(lines.map_while(Result::ok));
    let status = child.wait().expect("reap the tuner");
    let stderr = err_reader.join().expect("stderr reader");
    let stdout = seen.join("\n");
    assert!(
        stopped_at.elapsed() < Duration::from_secs(10),
        "stopping took {:?}",
        stopped_at.elapsed()
    );
    assert_eq!(status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("the search was stopped by SIGTERM"),
        "{stderr}"
    );

    // The hint names the exact command that resumes the search.
    let hint = seen
        .iter()
        .position(|l| l.contains("the others run when you resume with"))
        .and_then(|i| seen.get(i + 1))
        .unwrap_or_else(|| panic!("no resume hint:\n{stdout}"));
    let words: Vec<&str> = hint.split_whitespace().collect();
    assert_eq!(words[0], "jizhi-tune", "{hint}");
    assert_eq!(
        words[1..],
        [
            space.to_str().expect("path"),
            "--store",
            store.to_str().expect("path")
        ],
        "{hint}"
    );

    let before = export(&store);
    assert_eq!(before[0]["status"], "finished", "{before:#?}");
    assert_eq!(
        before[1]["status"], "planned",
        "the interrupted trial waits to rerun: {before:#?}"
    );
    let why = before[1]["error"].as_str().unwrap_or_default();
    assert!(why.starts_with("interrupted by SIGTERM"), "{why}");

    let out = run(bin().args(&words[1..]).arg("--headless"));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("trial 1 started"),
        "finished trial 1 was rerun:\n{stdout}"
    );
    assert!(stdout.contains("trial 2 started"), "{stdout}");
    let after = export(&store);
    assert_eq!(after[0], before[0], "the finished trial is kept as it was");
    assert_eq!(after[1]["status"], "finished", "{after:#?}");
    assert_eq!(after[1]["attempts"], 2, "{after:#?}");
    assert_eq!(after[1]["error"], serde_json::Value::Null, "{after:#?}");
}
