//! The pipeline a redrive runs: a pipeline file's graph from the stages that failed the
//! letters on, fed by one `dead_letters` source instead of the file's sources.
//!
//! [`Pipeline::for_redrive`] takes a checked pipeline and the stages the letters go into, and
//! gives a checked pipeline: the file's sources replaced by the letter source, which each
//! target stage takes as an input; every node no letter can reach dropped (the stages before
//! the targets, the sinks of other branches); no admin API, metrics listener or data folder
//! (the pipeline may be running beside, holding them); file sinks that append, whatever their
//! `mode` (a redrive adds to an output, never empties it).

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::config::{
    ConfigError, DeadLetterConfig, DeadLettersSource, Pipeline, SinkKind, Source, SourceKind,
    SyncMode, WriteMode,
};

impl Pipeline {
    /// The redrive of `letters` into `targets` (stages of this pipeline), with the dead
    /// letters it makes again written to `dead_letters` when given.
    pub fn for_redrive(
        &self,
        letters: DeadLettersSource,
        targets: &[String],
        dead_letters: Option<PathBuf>,
    ) -> Result<Pipeline, ConfigError> {
        let refuse = |key: &str, message: String| ConfigError {
            file: self.file.clone(),
            line: None,
            key: Some(key.to_string()),
            message,
        };
        for target in targets {
            if !self.stages.iter().any(|s| &s.name == target) {
                return Err(refuse(
                    "stages",
                    format!("the pipeline has no stage `{target}` to send letters into"),
                ));
            }
        }
        let taken: BTreeSet<&str> = (self.stages.iter().map(|s| s.name.as_str()))
            .chain(self.sinks.iter().map(|s| s.name.as_str()))
            .collect();
        let name = (0..)
            .map(|i| match i {
                0 => "redrive".to_string(),
                i => format!("redrive-{i}"),
            })
            .find(|n| !taken.contains(n.as_str()))
            .expect("a free name");
        let mut reached: BTreeSet<String> = BTreeSet::new();
        let mut stages = Vec::new();
        // Upstream first: a stage's inputs are decided before it.
        for stage in &self.stages {
            let mut inputs: Vec<String> = (stage.inputs.iter())
                .filter(|i| reached.contains(*i))
                .cloned()
                .collect();
            if targets.contains(&stage.name) {
                inputs.push(name.clone());
            }
            if inputs.is_empty() {
                continue;
            }
            reached.insert(stage.name.clone());
            let mut stage = stage.clone();
            stage.inputs = inputs;
            stages.push(stage);
        }
        let mut sinks = Vec::new();
        for sink in &self.sinks {
            let inputs: Vec<String> = (sink.inputs.iter())
                .filter(|i| reached.contains(*i))
                .cloned()
                .collect();
            if inputs.is_empty() {
                continue;
            }
            let mut sink = sink.clone();
            sink.inputs = inputs;
            if let SinkKind::File { mode, .. } = &mut sink.kind {
                *mode = WriteMode::Append;
            }
            sinks.push(sink);
        }
        if sinks.is_empty() {
            return Err(refuse(
                "sinks",
                format!(
                    "no sink is downstream of {}: the letters would go nowhere",
                    targets.join(", ")
                ),
            ));
        }
        let dead_letter = match dead_letters {
            Some(path) => DeadLetterConfig::File {
                path,
                mode: WriteMode::Append,
                sync: SyncMode::Flush,
            },
            None => match &self.dead_letter {
                DeadLetterConfig::File { path, sync, .. } => DeadLetterConfig::File {
                    path: path.clone(),
                    mode: WriteMode::Append,
                    sync: *sync,
                },
                DeadLetterConfig::Stderr => DeadLetterConfig::Stderr,
            },
        };
        Ok(Pipeline {
            sources: vec![Source {
                name,
                kind: SourceKind::DeadLetters(Box::new(letters)),
                batch_size: self.batch_size,
                linger: self.linger,
            }],
            stages,
            sinks,
            dead_letter,
            data_dir: None,
            admin: None,
            metrics: None,
            ..self.clone()
        })
    }
}
