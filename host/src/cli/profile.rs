//! `wask run --profile`: the phases of every task as a Chrome trace (the JSON trace
//! event format Perfetto and chrome://tracing open).
//!
//! Each task is one complete event (`ph: "X"`) on a lane, with its phases nested inside
//! it; lanes are assigned so that tasks running at the same time sit on different rows.

use crate::exec::record::TaskRecord;
use std::time::{SystemTime, UNIX_EPOCH};

fn micros(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1e6
}

/// The trace of a run's records.
pub fn chrome_trace(records: &[TaskRecord]) -> Vec<u8> {
    let mut timed: Vec<&TaskRecord> = records.iter().filter(|r| !r.phases.is_empty()).collect();
    timed.sort_by_key(|r| r.started_at);
    let mut lane_free_at: Vec<SystemTime> = Vec::new();
    let mut events = Vec::new();
    for r in timed {
        let lane = match lane_free_at.iter().position(|free| *free <= r.started_at) {
            Some(l) => l,
            None => {
                lane_free_at.push(r.started_at);
                lane_free_at.len() - 1
            }
        };
        lane_free_at[lane] = r.finished_at;
        let id = r.id.to_string();
        events.push(serde_json::json!({
            "name": id, "cat": "task", "ph": "X", "pid": 1, "tid": lane,
            "ts": micros(r.started_at), "dur": r.duration().as_secs_f64() * 1e6,
            "args": { "state": r.state.name(), "key": r.key.map(|k| k.hex()) },
        }));
        for p in &r.phases {
            events.push(serde_json::json!({
                "name": p.name, "cat": "phase", "ph": "X", "pid": 1, "tid": lane,
                "ts": micros(p.start), "dur": p.duration.as_secs_f64() * 1e6,
                "args": { "task": id },
            }));
        }
    }
    let trace = serde_json::json!({ "traceEvents": events, "displayTimeUnit": "ms" });
    serde_json::to_vec_pretty(&trace).expect("a trace serialises")
}
