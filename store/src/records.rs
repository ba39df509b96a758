//! The records kept in a store: study, trials, per-epoch metrics and events.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The study a store belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyRecord {
    /// Study name.
    pub name: String,
    /// The search-space file's text exactly as it was when the study started.
    pub space_text: String,
    /// Seed of the study's sampler.
    pub seed: u64,
    /// Creation time, seconds since the Unix epoch.
    pub created_unix: u64,
}

/// Where a trial stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrialStatus {
    /// Sampled but not started.
    Planned,
    /// Started and not yet ended (or interrupted by a crash).
    Running,
    /// Ran to completion.
    Finished,
    /// The trainer failed.
    Failed,
    /// The loss diverged and the trial was stopped.
    Diverged,
}

/// One trial: its parameters, status and outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// Trial id, unique within the study.
    pub id: u64,
    /// Stage name, e.g. "coarse" or "refine".
    pub stage: String,
    /// Nominal batch size (e.g. 65536).
    pub batch: u64,
    /// The batch actually run (e.g. 3072 on the proxy data set).
    pub proxy_batch: u64,
    /// Searched parameter name -> value (numbers or strings such as "dynamic").
    pub params: BTreeMap<String, serde_json::Value>,
    /// Current status.
    pub status: TrialStatus,
    /// How many times the trial was started.
    pub attempts: u32,
    /// Last error text (stderr tail) of a failed trial.
    pub error: Option<String>,
    /// Final validation top-1 in `[0, 1]` when finished.
    #[serde(default, with = "crate::floats::opt_f64_any")]
    pub final_val_top1: Option<f64>,
    /// Wall-clock seconds the trial took.
    #[serde(default, with = "crate::floats::opt_f64_any")]
    pub wall_secs: Option<f64>,
    /// The cost model's step time of the full-size model on the study's modelled cluster with
    /// this trial's speed settings, when the study models one.
    #[serde(
        default,
        with = "crate::floats::opt_f64_any",
        skip_serializing_if = "Option::is_none"
    )]
    pub modelled_step_secs: Option<f64>,
    /// Filled by trials()/trial() from the epoch key space; ignored by put_trial.
    #[serde(default)]
    pub epochs: Vec<EpochMetrics>,
}

/// Metrics of one epoch of a trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch number.
    pub epoch: u32,
    /// Optimizer step reached at the end of the epoch.
    pub step: u64,
    /// Mean training loss (may be NaN or infinite for a diverging trial).
    #[serde(with = "crate::floats::f64_any")]
    pub train_loss: f64,
    /// Validation top-1 accuracy in `[0, 1]`.
    #[serde(with = "crate::floats::f64_any")]
    pub val_top1: f64,
    /// Training throughput.
    #[serde(with = "crate::floats::f64_any")]
    pub images_per_sec: f64,
    /// Loss scale at the end of the epoch.
    #[serde(with = "crate::floats::f64_any")]
    pub loss_scale: f64,
    /// Steps skipped because of overflow.
    pub skipped_steps: u64,
    /// Wall-clock seconds since the trial started.
    #[serde(with = "crate::floats::f64_any")]
    pub wall_secs: f64,
    /// Fraction of nonzero gradient values that became 0 when cast to half (0 for fp32, and for
    /// epochs recorded before it was kept).
    #[serde(default, with = "crate::floats::f64_any")]
    pub underflow_fraction: f64,
}

/// One entry of the audit event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Time of the event, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The trial concerned, if any.
    pub trial_id: Option<u64>,
    /// Short kind, e.g. "trial-started".
    pub kind: String,
    /// Free-form detail.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(loss: f64) -> EpochMetrics {
        EpochMetrics {
            epoch: 1,
            step: 10,
            train_loss: loss,
            val_top1: 0.5,
            images_per_sec: 1000.0,
            loss_scale: 65536.0,
            skipped_steps: 0,
            wall_secs: 1.5,
            underflow_fraction: 0.0,
        }
    }

    #[test]
    fn finite_floats_are_plain_json_numbers() {
        let text = serde_json::to_string(&metrics(2.25)).expect("encode");
        assert!(text.contains("\"train_loss\":2.25"), "{text}");
        let back: EpochMetrics = serde_json::from_str(&text).expect("decode");
        assert_eq!(back, metrics(2.25));
    }

    #[test]
    fn non_finite_floats_round_trip() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let text = serde_json::to_string(&metrics(v)).expect("encode");
            let back: EpochMetrics = serde_json::from_str(&text).expect("decode");
            assert_eq!(back.train_loss.is_nan(), v.is_nan());
            if !v.is_nan() {
                assert_eq!(back.train_loss, v);
            }
        }
        let text = serde_json::to_string(&metrics(1.0))
            .expect("encode")
            .replace("\"train_loss\":1.0", "\"train_loss\":null");
        let back: EpochMetrics = serde_json::from_str(&text).expect("null reads as NaN");
        assert!(back.train_loss.is_nan());
    }

    #[test]
    fn trial_status_is_kebab_case() {
        let text = serde_json::to_string(&TrialStatus::Diverged).expect("encode");
        assert_eq!(text, "\"diverged\"");
    }

    #[test]
    fn optional_floats_round_trip() {
        let mut t = TrialRecord {
            id: 1,
            stage: "coarse".into(),
            batch: 65536,
            proxy_batch: 3072,
            params: BTreeMap::new(),
            status: TrialStatus::Finished,
            attempts: 1,
            error: None,
            final_val_top1: Some(0.75),
            wall_secs: None,
            modelled_step_secs: None,
            epochs: Vec::new(),
        };
        let back: TrialRecord =
            serde_json::from_str(&serde_json::to_string(&t).expect("encode")).expect("decode");
        assert_eq!(back, t);
        t.final_val_top1 = Some(f64::NAN);
        let back: TrialRecord =
            serde_json::from_str(&serde_json::to_string(&t).expect("encode")).expect("decode");
        assert!(back.final_val_top1.is_some_and(f64::is_nan));
        let back: TrialRecord = serde_json::from_str(
            r#"{"id":1,"stage":"s","batch":1,"proxy_batch":1,"params":{},"status":"planned","attempts":0,"error":null}"#,
        )
        .expect("missing optional fields default");
        assert_eq!(back.final_val_top1, None);
        assert_eq!(back.wall_secs, None);
    }

    #[test]
    fn records_written_before_the_speed_and_underflow_fields_still_read() {
        let old_trial = r#"{"id":4,"stage":"speed","batch":8192,"proxy_batch":384,"params":{},"status":"finished","attempts":1,"error":null,"final_val_top1":0.5,"wall_secs":2.0}"#;
        let back: TrialRecord = serde_json::from_str(old_trial).expect("old trial");
        assert_eq!(back.modelled_step_secs, None);
        // A trial without a modelled step time writes exactly what older builds wrote.
        let text = serde_json::to_string(&back).expect("encode");
        assert!(!text.contains("modelled_step_secs"), "{text}");
        let old_epoch = r#"{"epoch":1,"step":10,"train_loss":1.0,"val_top1":0.5,"images_per_sec":1000.0,"loss_scale":65536.0,"skipped_steps":0,"wall_secs":1.5}"#;
        let back: EpochMetrics = serde_json::from_str(old_epoch).expect("old epoch");
        assert_eq!(back, metrics(1.0));

        let mut t: TrialRecord = serde_json::from_str(old_trial).expect("old trial");
        t.modelled_step_secs = Some(0.125);
        let back: TrialRecord =
            serde_json::from_str(&serde_json::to_string(&t).expect("encode")).expect("decode");
        assert_eq!(back.modelled_step_secs, Some(0.125));
        let m = EpochMetrics {
            underflow_fraction: 0.03125,
            ..metrics(1.0)
        };
        let back: EpochMetrics =
            serde_json::from_str(&serde_json::to_string(&m).expect("encode")).expect("decode");
        assert_eq!(back.underflow_fraction, 0.03125);
    }
}
