//! From a validated job file to a [`Pipeline`]: the source (each kind starts its own, see
//! [`SourceSpec::pipeline`](crate::spec::SourceSpec::pipeline)), the transform (SQL or a
//! registered Rust one), the sink, and the fault-injection hook.

use crate::spec::{JobSpec, SinkKind, SourceSpec, SpecError, TransformSpec};
use std::collections::BTreeMap;
use std::sync::Arc;
use tidewater_connectors::kafka::Assignment;
use tidewater_core::ops::aggregate::{AggregateQuery, Aggregation, OutputMode};
use tidewater_core::{BatchContext, CrashPoint, Pipeline, SqlTransform, StepHook, Transform};

/// Rust transforms a job file can name with `transform.rust = "<name>"`.
#[derive(Clone, Default)]
pub struct Registry {
    transforms: BTreeMap<String, Arc<dyn Transform>>,
}

impl Registry {
    /// The transforms every `tidewater` binary has: `identity`.
    pub fn builtin() -> Self {
        Registry::default().with("identity", |input, _: &BatchContext| Ok(input))
    }

    pub fn with(mut self, name: &str, transform: impl Transform + 'static) -> Self {
        self.transforms.insert(name.to_string(), Arc::new(transform));
        self
    }

    fn get(&self, name: &str) -> Option<Arc<dyn Transform>> {
        self.transforms.get(name).cloned()
    }

    fn names(&self) -> String {
        self.transforms.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

struct Shared(Arc<dyn Transform>);

impl Transform for Shared {
    fn apply(
        &self,
        input: polars::prelude::LazyFrame,
        ctx: &BatchContext,
    ) -> tidewater_core::Result<polars::prelude::LazyFrame> {
        self.0.apply(input, ctx)
    }
}

/// Builds the job's pipeline. SQL is planned against the declared schema first, so a bad query
/// is refused before anything runs.
pub fn pipeline_for(job: &JobSpec, registry: &Registry) -> Result<Pipeline, SpecError> {
    let err = |key: &str, problem: String| SpecError { file: job.file.display().to_string(), key: key.into(), problem };
    let (pipeline, schema) = job.source.pipeline(&job.name).map_err(|problem| err("source", problem))?;
    let watermark = job.watermark.as_ref().map(|(column, _)| column.as_str());
    let statics: Vec<String> = job.tables.iter().map(|(name, _)| name.clone()).collect();
    // A query that reads static tables is planned at its first batch, when their schemas are
    // known; without them, against the declared schema now.
    let schema = schema.filter(|_| statics.is_empty());
    let aggregation = match &job.transform {
        TransformSpec::Sql(sql) => {
            AggregateQuery::parse(sql, watermark, &statics).map_err(|problem| err("transform.sql", problem))?
        }
        _ => None,
    };
    if let SourceSpec::Kafka(kafka) = &job.source
        && kafka.assignment != Assignment::All
        && let Some(key) = [
            ("watermark", job.watermark.is_some()),
            ("dedup", job.dedup.is_some()),
            ("transform.sql", aggregation.is_some()),
        ]
        .iter()
        .find_map(|(k, set)| set.then_some(*k))
    {
        return Err(err(
            key,
            "a job scaled out over processes (--worker, --member) is row-wise: each process holds only its partitions, so a watermark, deduplication or aggregation would see a part of the stream; run it as one process".into(),
        ));
    }
    if let SourceSpec::Kafka(kafka) = &job.source
        && matches!(kafka.assignment, Assignment::Group { .. })
        && !matches!(job.sink.kind, SinkKind::Delta)
    {
        return Err(err(
            "sink.kind",
            "a consumer-group member (--member) resumes each partition it is given where the sink table records it: that needs a Delta table sink (--worker I/N splits the partitions statically, with progress in each worker's checkpoint)".into(),
        ));
    }
    let mut key = job.sink.key.clone();
    // The columns the sink names: they must be in the output.
    let (key_column, headers_column) = match &job.sink.kind {
        SinkKind::Kafka(kafka) => (
            kafka.key_column.iter().cloned().collect::<Vec<_>>(),
            kafka.headers_column.iter().cloned().collect::<Vec<_>>(),
        ),
        _ => (Vec::new(), Vec::new()),
    };
    let pipeline = match (&job.transform, aggregation) {
        (_, Some(query)) => {
            let groups = query.group_columns();
            if query.keys.is_empty() && query.window.is_none() {
                if job.sink.mode != OutputMode::Complete {
                    return Err(err(
                        "sink.mode",
                        "an aggregation over the whole input (no GROUP BY) is one row, rewritten at every batch: use mode = \"complete\"".into(),
                    ));
                }
            } else if key.is_empty() {
                key = groups;
            } else if key.len() != groups.len() || !groups.iter().all(|g| key.contains(g)) {
                return Err(err(
                    "sink.key",
                    format!(
                        "an aggregation's rows are keyed by its groups, [{}]: leave the key out, or name exactly those",
                        groups.join(", ")
                    ),
                ));
            }
            let aggregation = Aggregation::new(query, job.sink.mode, watermark).map_err(|p| err("sink.mode", p))?;
            if let Some(schema) = &schema {
                let empty = polars::prelude::DataFrame::empty_with_schema(schema);
                let out = aggregation
                    .step(None, empty, None, &Default::default())
                    .map_err(|e| err("transform.sql", e.to_string()))?
                    .output;
                check_output(
                    &out,
                    &[
                        ("sink.partition_by", &job.sink.partition_by),
                        ("sink.key", &key),
                        ("sink.key_column", &key_column),
                        ("sink.headers_column", &headers_column),
                    ],
                    "aggregation",
                    &err,
                )?;
            }
            pipeline.with_aggregation(aggregation)
        }
        _ if job.sink.mode != OutputMode::Append => {
            return Err(err(
                "sink.mode",
                format!(
                    "`{}` is for aggregating queries (SELECT … FROM input GROUP BY …); this job's transform is row-wise: use append",
                    job.sink.mode
                ),
            ));
        }
        (TransformSpec::Identity, None) => pipeline,
        (TransformSpec::Sql(sql), None) => {
            let transform = SqlTransform::new(sql);
            transform.check_row_wise(&statics).map_err(|problem| err("transform.sql", problem))?;
            if let Some(schema) = &schema {
                let out = transform.check(schema).map_err(|e| err("transform.sql", e.to_string()))?;
                let empty = polars::prelude::DataFrame::empty_with_schema(&out);
                let roles = [
                    ("sink.partition_by", &job.sink.partition_by),
                    ("sink.key", &job.sink.key),
                    ("sink.key_column", &key_column),
                    ("sink.headers_column", &headers_column),
                ];
                check_output(&empty, &roles, "transform", &err)?;
            }
            pipeline.with_transform(transform)
        }
        (TransformSpec::Rust(name), _) => {
            let transform = registry.get(name).ok_or_else(|| {
                err(
                    "transform.rust",
                    format!("no Rust transform named `{name}` in this binary; it has: {}", registry.names()),
                )
            })?;
            pipeline.with_transform(Shared(transform))
        }
    };
    let pipeline = job.sink.attach(pipeline).map_err(|problem| err("sink.table", problem))?;
    let mut pipeline =
        pipeline.with_partition_by(job.sink.partition_by.clone()).with_key(key).with_checkpoint(&job.checkpoint);
    if let Some((column, delay)) = &job.watermark {
        pipeline = pipeline.with_watermark(column, *delay);
    }
    if let Some(keys) = &job.dedup {
        pipeline = pipeline.with_dedup(keys.clone());
    }
    for (name, location) in &job.tables {
        pipeline = pipeline.with_static_table(name, location);
    }
    if let Some(late) = &job.sink.late {
        pipeline = pipeline.with_late_table(late);
    }
    if let Some(q) = &job.sink.quarantine {
        pipeline = pipeline.with_quarantine(q);
    }
    if let Some(hook) = crash_hook_from_env().map_err(|e| err("(environment) TIDEWATER_CRASH_AT", e))? {
        pipeline = pipeline.with_hook(hook);
    }
    if let Some(every) = heartbeat_from_env().map_err(|e| err("(environment) TIDEWATER_HEARTBEAT_MS", e))? {
        pipeline = pipeline.with_heartbeat(every);
    }
    Ok(pipeline)
}

/// `TIDEWATER_HEARTBEAT_MS`: how often a running backfill chunk records that it is alive
/// (default 10 s; tests set it short).
fn heartbeat_from_env() -> Result<Option<std::time::Duration>, String> {
    match std::env::var("TIDEWATER_HEARTBEAT_MS") {
        Err(_) => Ok(None),
        Ok(ms) => match ms.parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Some(std::time::Duration::from_millis(ms))),
            _ => Err(format!("`{ms}` is not a number of milliseconds above 0")),
        },
    }
}

/// Refuses an output (`what`'s, planned on an empty input) that Delta cannot hold, or that
/// lacks a column the sink's `roles` name.
fn check_output(
    out: &polars::prelude::DataFrame,
    roles: &[(&str, &Vec<String>)],
    what: &str,
    err: &dyn Fn(&str, String) -> SpecError,
) -> Result<(), SpecError> {
    tidewater_core::bridge::arrow_schema(out).map_err(|e| err("transform.sql", e.to_string()))?;
    for (role, columns) in roles {
        if let Some(column) = columns.iter().find(|c| !out.schema().contains(c.as_str())) {
            return Err(err(role, format!("`{column}` is not a column of the {what}'s output")));
        }
    }
    Ok(())
}

/// `TIDEWATER_CRASH_AT=<point>:<batch>` kills this process with SIGKILL when batch `<batch>`
/// passes `<point>` (after-offset-log, after-data-files, after-delta-commit,
/// after-sink-delivery (console and Kafka sinks), after-state-write (jobs with state),
/// after-commit-log).
/// For crash tests; never set it in production.
fn crash_hook_from_env() -> Result<Option<StepHook>, String> {
    let Ok(setting) = std::env::var("TIDEWATER_CRASH_AT") else {
        return Ok(None);
    };
    let (point, batch) = setting.split_once(':').ok_or_else(|| format!("`{setting}`: expected <point>:<batch id>"))?;
    let point: CrashPoint = point.parse()?;
    let batch: u64 = batch.parse().map_err(|_| format!("`{batch}` is not a batch id"))?;
    Ok(Some(Arc::new(move |at: CrashPoint, id: tidewater_core::BatchId| {
        if at == point && id.get() == batch {
            eprintln!("tidewater: TIDEWATER_CRASH_AT: killing myself at {at} of {id}");
            // SAFETY: kill(2) on our own pid with a constant signal has no memory effects.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    })))
}
