//! `weir redrive`: sends the letters of a dead-letter file again, each into the stage that
//! failed it, through the pipeline file's stages and sinks; `--dry-run` prints what it would
//! send. The letters are read and checked first (a line that is not a letter, a letter whose
//! stage is gone), so that a refused redrive sends nothing; then the pipeline the redrive runs
//! is made (`Pipeline::for_redrive`) and run as `weir run` runs one.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{CommandResult, ReportFormat, refused};
use crate::config::{
    DeadLetterConfig, DeadLettersSource, Pipeline, Selection, check_kind, default_progress, now_ms,
    parse_since, shown,
};
use crate::pipeline::connectors::redrive;

/// What `weir redrive` was asked.
pub struct Args<'a> {
    pub letters: &'a Path,
    pub pipeline: &'a Path,
    pub into: Option<String>,
    pub kinds: Vec<String>,
    pub nodes: Vec<String>,
    pub since: Option<String>,
    pub limit: Option<u64>,
    pub dry_run: bool,
    pub dead_letters: Option<PathBuf>,
    pub progress: Option<PathBuf>,
    pub quiet: bool,
    pub report: Option<ReportFormat>,
}

pub fn redrive(a: Args<'_>) -> CommandResult {
    let pipeline = Pipeline::load(a.pipeline).map_err(refused)?;
    for kind in &a.kinds {
        check_kind(kind).map_err(|m| (2, format!("--kind: {m}")))?;
    }
    let since = match &a.since {
        Some(s) => Some(parse_since(s, now_ms()).map_err(|m| (2, format!("--since: {m}")))?),
        None => None,
    };
    if a.limit == Some(0) {
        return Err((2, "--limit: write at least 1".to_string()));
    }
    let source = DeadLettersSource {
        path: a.letters.to_path_buf(),
        into: a.into.clone(),
        select: Selection {
            kinds: a.kinds.clone(),
            nodes: a.nodes.clone(),
            since,
            limit: a.limit,
        },
        progress: a
            .progress
            .clone()
            .unwrap_or_else(|| default_progress(a.letters)),
        interval: pipeline.checkpoint_interval,
    };
    if !a.letters.is_file() {
        return Err((2, format!("{}: no such file", a.letters.display())));
    }
    let is_stage = |name: &str| pipeline.stages.iter().any(|s| s.name == name);
    // One pass over the letters, none of them kept: the stages they go to, each checked, and
    // with --dry-run a line for each.
    let mut targets: Vec<String> = Vec::new();
    let mut check = |read: &redrive::Read1, into: &str| -> Result<(), String> {
        if !is_stage(into) {
            return Err(format!(
                "{}:{}: the letter of {} has no stage {} to go to in {}: name one with \
                 --into, or leave such letters out with --node or --kind",
                a.letters.display(),
                read.line,
                shown(&read.letter.stage),
                shown(into),
                a.pipeline.display()
            ));
        }
        if !targets.iter().any(|t| t == into) {
            targets.push(into.to_string());
        }
        if a.dry_run {
            out!("{}", read.letter.describe(read.line, into));
        }
        Ok(())
    };
    let planned = redrive::plan(&source, &mut check).map_err(refused)?;
    if a.dry_run {
        crate::notice::info(&format!(
            "dry run: {planned} letters would be sent, into {}",
            if targets.is_empty() {
                "nothing".to_string()
            } else {
                targets.join(", ")
            }
        ));
        return Ok(());
    }
    if planned == 0 {
        crate::notice::info(&format!(
            "nothing to redrive: no letter of {} is selected that was not sent already",
            a.letters.display()
        ));
        return Ok(());
    }
    let redriven = pipeline
        .for_redrive(source, &targets, a.dead_letters.clone())
        .map_err(refused)?;
    if let DeadLetterConfig::File { path, .. } = &redriven.dead_letter
        && same_file(path, a.letters)
    {
        return Err((
            2,
            format!(
                "the dead letters of this redrive would go to {}, the file it reads: give \
                 --dead-letters OTHER-FILE, or move the letter file away first",
                a.letters.display()
            ),
        ));
    }
    super::run_pipeline(
        &redriven,
        a.quiet,
        a.report,
        crate::pipeline::topology::RunOptions::default(),
    )
}

fn same_file(a: &Path, b: &Path) -> bool {
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    matches!((id(a), id(b)), (Some(x), Some(y)) if x == y)
}
