//! Native through weir: weir's own data plane (`Topology::build_with`) with every stage run by
//! its plugin's exact code compiled into this binary (`weir_plugin::native::process`), in
//! process. Set against weir proper, it leaves only the sandbox's cost; set against the
//! ceiling, only the host's.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use weir::sandbox::{
    Events, GuestFailure, GuestFailureKind, Output, Processor, ProcessorFactory, TrapKind, Trapped,
};
use weir_plugin::{Batch, Failure, Settings, Transform, native};

use crate::spec::Workload;

/// Makes a stage's processors: the plugin type, initialised as its component's `init` does.
struct Factory<T>(PhantomData<fn() -> T>);

impl<T: Transform + Send> ProcessorFactory for Factory<T> {
    fn make(&self) -> Result<Box<dyn Processor>, Trapped> {
        let stage = native::init::<T>(Settings::default()).map_err(|message| Trapped {
            kind: TrapKind::InitFailed,
            message,
        })?;
        Ok(Box::new(Native {
            stage,
            input: Batch::default(),
        }))
    }

    fn digest(&self) -> &str {
        "native-code"
    }
}

struct Native<T> {
    stage: T,
    /// The input's copy, kept across calls as a guest keeps its linear memory.
    input: Batch,
}

impl<T: Transform + Send> Processor for Native<T> {
    fn process(&mut self, input: &Events) -> Result<Output, Trapped> {
        // The sandbox copies every batch into the guest's memory; the native stage gets the
        // same copy, into buffers reused from call to call.
        let copy = &mut self.input;
        refill(&mut copy.data, &input.data);
        refill(&mut copy.events, &input.events);
        refill(&mut copy.headers, &input.headers);
        refill(&mut copy.timestamps, &input.timestamps);
        let out = native::process(&mut self.stage, copy);
        // The two crates' batch types have the same four vectors: moved, not copied.
        let events = Events {
            data: out.events.data,
            events: out.events.events,
            headers: out.events.headers,
            timestamps: out.events.timestamps,
        };
        let failures = out
            .failures
            .into_iter()
            .map(|f| {
                let (kind, reason) = match f.failure {
                    Failure::Reject(r) => (GuestFailureKind::Reject, r),
                    Failure::Retry(r) => (GuestFailureKind::Retry, r),
                };
                GuestFailure {
                    index: f.index,
                    kind,
                    reason,
                }
            })
            .collect();
        Ok(Output {
            events,
            counts: out.counts,
            failures,
        })
    }
}

fn refill<T: Copy>(to: &mut Vec<T>, from: &[T]) {
    to.clear();
    to.extend_from_slice(from);
}

fn factory<T: Transform + Send>() -> Arc<dyn ProcessorFactory> {
    Arc::new(Factory::<T>(PhantomData))
}

/// The native processors of a workload's stages, by stage name.
pub fn natives(workload: Workload) -> HashMap<String, Arc<dyn ProcessorFactory>> {
    let made: [Arc<dyn ProcessorFactory>; 3] = match workload {
        Workload::W1 => std::array::from_fn(|_| factory::<passthrough::Passthrough>()),
        Workload::W2 => std::array::from_fn(|_| factory::<uppercase::Uppercase>()),
        Workload::W3 => [
            factory::<sshd_parse::SshdParse>(),
            factory::<auth_filter::AuthFilter>(),
            factory::<redact_ip::RedactIp>(),
        ],
    };
    workload
        .stages()
        .into_iter()
        .map(String::from)
        .zip(made)
        .collect()
}
