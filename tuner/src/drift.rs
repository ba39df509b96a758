//! Whether the search space a study was started with differs from the one given now, key by key.
//!
//! Both texts are compared as parsed TOML values, so comments, blank lines and key order are not
//! drift; any changed value is, since it changes the plan or what a trial means. The keys of
//! `[scheduler]` are not: they say how trials are run (how many at once, time limits, retries,
//! launcher), like the command-line options they stand for, and change no trial's command.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// One difference between the stored and the given search space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// A key has another value.
    Changed {
        /// Dotted key, e.g. `params.peak_lr.max`.
        key: String,
        /// Value in the stored space.
        old: String,
        /// Value in the given space.
        new: String,
    },
    /// A key only the given space has.
    Added {
        /// Dotted key.
        key: String,
        /// Its value.
        new: String,
    },
    /// A key only the stored space has.
    Removed {
        /// Dotted key.
        key: String,
        /// Its value.
        old: String,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Changed { key, old, new } => write!(f, "{key}: {old} -> {new}"),
            Difference::Added { key, new } => write!(f, "{key}: (not set) -> {new}"),
            Difference::Removed { key, old } => write!(f, "{key}: {old} -> (not set)"),
        }
    }
}

/// Why a run on an existing store was refused: its search space or seed changed.
#[derive(Debug, thiserror::Error)]
pub struct Refused {
    /// The store folder.
    pub store: PathBuf,
    /// What changed.
    pub differences: Vec<Difference>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "the study in {} was started with another search space or seed; what changed (stored -> given):",
            self.store.display()
        )?;
        for d in &self.differences {
            writeln!(f, "  {d}")?;
        }
        write!(
            f,
            "nothing was run or written. Rerun with --fork NEW_NAME to start a new study that inherits this one's \
             history (identical trials are not run again), with --fresh to start over (the old store is moved aside, \
             never deleted), or with the original file"
        )
    }
}

/// The differences between the stored space (`old_text`, `old_seed`) and the given one.
pub fn compare(old_text: &str, old_seed: u64, new_text: &str, new_seed: u64) -> Vec<Difference> {
    let mut out = match (flatten(old_text), flatten(new_text)) {
        (Some(old), Some(new)) => diff_maps(&old, &new),
        // The stored text always parsed once; if it no longer does, say the files differ.
        _ if old_text != new_text => vec![Difference::Changed {
            key: "(the whole file)".into(),
            old: "the stored text".into(),
            new: "a different text".into(),
        }],
        _ => Vec::new(),
    };
    let seed_listed = out.iter().any(|d| match d {
        Difference::Changed { key, old, new } => {
            key == "study.seed" && *old == old_seed.to_string() && *new == new_seed.to_string()
        }
        _ => false,
    });
    if old_seed != new_seed && !seed_listed {
        out.push(Difference::Changed {
            key: "seed of the run (--seed or study.seed)".into(),
            old: old_seed.to_string(),
            new: new_seed.to_string(),
        });
    }
    out
}

fn diff_maps(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<Difference> {
    let mut out = Vec::new();
    for (key, o) in old {
        match new.get(key) {
            Some(n) if n == o => {}
            Some(n) => out.push(Difference::Changed {
                key: key.clone(),
                old: o.clone(),
                new: n.clone(),
            }),
            None => out.push(Difference::Removed {
                key: key.clone(),
                old: o.clone(),
            }),
        }
    }
    for (key, n) in new {
        if !old.contains_key(key) {
            out.push(Difference::Added {
                key: key.clone(),
                new: n.clone(),
            });
        }
    }
    out.sort_by(|a, b| key_of(a).cmp(key_of(b)));
    out
}

fn key_of(d: &Difference) -> &str {
    match d {
        Difference::Changed { key, .. }
        | Difference::Added { key, .. }
        | Difference::Removed { key, .. } => key,
    }
}

/// The top-level table whose keys are never drift.
const NOT_DRIFT: &str = "scheduler";

/// Every leaf of a TOML document as dotted key -> value text (arrays are leaves), `[scheduler]`
/// left out; None if it does not parse.
fn flatten(text: &str) -> Option<BTreeMap<String, String>> {
    let mut table: toml::Table = text.parse().ok()?;
    table.remove(NOT_DRIFT);
    let mut out = BTreeMap::new();
    walk("", &toml::Value::Table(table), &mut out);
    Some(out)
}

fn walk(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(&key, v, out);
            }
        }
        leaf => {
            out.insert(prefix.to_string(), leaf.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPACE: &str = "# a comment\n[study]\nname = \"s\"\nseed = 7\n[params.peak_lr]\nmin = 0.25\nmax = 4.0\n[batch]\nsizes = [8192, 16384]\n";

    #[test]
    fn comments_and_layout_are_not_drift() {
        let relaid = "[batch]\nsizes = [ 8192,16384 ]\n\n[study]\nseed = 7\nname = \"s\" # renamed? no\n[params.peak_lr]\nmax = 4.0\nmin = 0.25\n";
        assert_eq!(compare(SPACE, 7, relaid, 7), vec![]);
    }

    #[test]
    fn changes_are_listed_key_by_key() {
        let changed = SPACE
            .replace("max = 4.0", "max = 8.0")
            .replace("[8192, 16384]", "[8192]")
            .replace("min = 0.25\n", "")
            + "[params.warmup_epochs]\nmin = 0.0\n";
        let d = compare(SPACE, 7, &changed, 7);
        let text: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            text,
            [
                "batch.sizes: [8192, 16384] -> [8192]",
                "params.peak_lr.max: 4.0 -> 8.0",
                "params.peak_lr.min: 0.25 -> (not set)",
                "params.warmup_epochs.min: (not set) -> 0.0",
            ]
        );
    }

    #[test]
    fn scheduler_keys_are_not_drift() {
        let scheduled = format!(
            "{SPACE}[scheduler]\nconcurrency = 4\ntrial_timeout = \"30m\"\nlauncher = \"srun -n1\"\n"
        );
        assert_eq!(compare(SPACE, 7, &scheduled, 7), vec![]);
        assert_eq!(compare(&scheduled, 7, SPACE, 7), vec![]);
        let retimed = scheduled.replace("\"30m\"", "\"1h\"");
        assert_eq!(compare(&scheduled, 7, &retimed, 7), vec![]);
        // Everything else still counts next to it.
        let changed = retimed.replace("max = 4.0", "max = 8.0");
        assert_eq!(compare(&scheduled, 7, &changed, 7).len(), 1);
    }

    #[test]
    fn a_seed_given_on_the_command_line_counts() {
        let d = compare(SPACE, 7, SPACE, 8);
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].to_string(),
            "seed of the run (--seed or study.seed): 7 -> 8"
        );
        // A seed changed in the file is listed once, under its key.
        let d = compare(SPACE, 7, &SPACE.replace("seed = 7", "seed = 8"), 8);
        assert_eq!(
            d.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            ["study.seed: 7 -> 8"]
        );
    }
}
