//! `type = "null"`: a sink that counts events and bytes and writes nothing, through the same
//! line writer as the others (so its acknowledgements are released as theirs are).

use super::parts::SinkParts;
use super::seam::{ConnectorError, RunningSink};
use super::writer::{self, LineSink};
use crate::config;

/// `type = "null"`.
pub(crate) struct NullSink {
    name: String,
    encoding: config::Encoding,
}

impl NullSink {
    pub(crate) fn new(config: &config::Sink) -> NullSink {
        NullSink {
            name: config.name.clone(),
            encoding: config.encoding,
        }
    }
}

impl super::seam::Sink for NullSink {
    fn describe(&self) -> String {
        "nothing (counted only)".to_string()
    }

    fn start(self: Box<Self>, parts: SinkParts) -> Result<RunningSink, ConnectorError> {
        let sink = LineSink {
            name: self.name,
            out: None,
            encoding: self.encoding,
        };
        writer::spawn(sink, parts).map_err(ConnectorError::io("cannot start its thread"))
    }
}
