//! Provenance: which version of each stage produced a batch's events.
//!
//! Every output event carries the host header `weir.version.<stage>` (the first 12 hex digits
//! of the plugin's sha256) for each stage it went through. Since a batch goes through each
//! stage on one version as a whole, the headers are recorded once per batch, not per event: a
//! [`Provenance`] is a shared, immutable list of (name, value) pairs that sinks and dead
//! letters append to every event they write. A stage's worker keeps the last provenance it
//! made ([`Stamp`]), so a steady stream of batches with the same upstream versions costs a
//! reference count per batch, not an allocation.

use std::sync::Arc;

/// Prefix of the version headers. Names starting with `weir.` belong to the host.
pub const VERSION_HEADER: &str = "weir.version.";

/// The version header a stage adds: `weir.version.<stage>` and the version's short digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionHeader {
    pub name: Arc<str>,
    pub value: Arc<str>,
}

impl VersionHeader {
    pub fn new(stage: &str, digest: &str) -> VersionHeader {
        VersionHeader {
            name: Arc::from(format!("{VERSION_HEADER}{stage}")),
            value: Arc::from(&digest[..digest.len().min(12)]),
        }
    }
}

/// The version headers of a batch, earliest stage first; empty for a source's batch.
#[derive(Debug, Clone, Default)]
pub struct Provenance(Option<Arc<[VersionHeader]>>);

impl Provenance {
    /// The headers, earliest stage first.
    pub fn headers(&self) -> &[VersionHeader] {
        self.0.as_deref().unwrap_or(&[])
    }

    /// This provenance followed by `header`. A stage that appears already (it cannot, in a
    /// graph without cycles) would be replaced, not repeated.
    fn then(&self, header: &VersionHeader) -> Provenance {
        let mut headers: Vec<VersionHeader> = self
            .headers()
            .iter()
            .filter(|h| h.name != header.name)
            .cloned()
            .collect();
        headers.push(header.clone());
        Provenance(Some(Arc::from(headers)))
    }

    fn same(&self, other: &Provenance) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// A stage worker's maker of output provenance, with a one-entry cache.
#[derive(Debug, Default)]
pub struct Stamp {
    last_in: Provenance,
    last_header: Option<VersionHeader>,
    last_out: Provenance,
}

impl Stamp {
    /// The provenance of what a stage at version `header` made from a batch with `input`.
    pub fn stamp(&mut self, input: &Provenance, header: &VersionHeader) -> Provenance {
        let hit = self.last_header.as_ref() == Some(header) && self.last_in.same(input);
        if !hit {
            self.last_out = input.then(header);
            self.last_in = input.clone();
            self.last_header = Some(header.clone());
        }
        self.last_out.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_stream_reuses_one_provenance() {
        let parse = VersionHeader::new("parse", &"a".repeat(64));
        let mut stamp = Stamp::default();
        let first = stamp.stamp(&Provenance::default(), &parse);
        let second = stamp.stamp(&Provenance::default(), &parse);
        assert!(first.same(&second), "no new allocation for the same input");
        assert_eq!(first.headers()[0].name.as_ref(), "weir.version.parse");
        assert_eq!(first.headers()[0].value.as_ref(), "aaaaaaaaaaaa");
        let filter = VersionHeader::new("filter", &"b".repeat(64));
        let both = Stamp::default().stamp(&first, &filter);
        let names: Vec<&str> = both.headers().iter().map(|h| h.name.as_ref()).collect();
        assert_eq!(names, ["weir.version.parse", "weir.version.filter"]);
    }
}
