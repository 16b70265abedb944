//! Keyed state: the host side of `weir:stage/state@0.3.0`.
//!
//! The sandbox knows nothing of where state lives (see `keyed`, the seam). A stage whose plugin imports `state` is
//! given a [`KeyedState`] (the pipeline implements it with its overlay, cache and store); each
//! of the guest's state calls arrives in [`link`]'s functions, which check the contract's hard
//! limits (key and value sizes, scan pages, reply sizes), charge the call's fuel for the work
//! and the bytes, and hand the operation to the `KeyedState`. After the call the instance
//! tells it whether the call completed ([`KeyedState::commit`]) or not
//! ([`KeyedState::discard`]), so a call's writes land whole or not at all.
//!
//! The fuel comes from the same budget as the guest's own instructions: a plugin that loops on
//! state calls runs out of fuel as a plugin that loops on arithmetic does, and one call can
//! make the host do no more work than its fuel buys.

use std::time::Duration;

use wasmtime::component::{ComponentType, Lift, Linker, Lower};
use wasmtime::{StoreContextMut, Trap};

use crate::host::HostState;
use crate::keyed::{
    KeyedState, MAX_KEY, MAX_REPLY_BYTES, MAX_SCAN_ENTRIES, MAX_VALUE, Refusal, reserved,
};

/// The guest's `state-error`.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq, Eq)]
#[component(variant)]
pub(crate) enum StateError {
    #[component(name = "limit")]
    Limit(String),
    #[component(name = "not-a-counter")]
    NotACounter,
    #[component(name = "overflow")]
    Overflow,
}

impl From<Refusal> for StateError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Limit(m) => StateError::Limit(m),
            Refusal::NotACounter => StateError::NotACounter,
            Refusal::Overflow => StateError::Overflow,
        }
    }
}

/// The guest's `entry`.
#[derive(ComponentType, Lift, Lower, Debug, Clone)]
#[component(record)]
pub(crate) struct Entry {
    key: Vec<u8>,
    value: Vec<u8>,
    #[component(name = "ttl-ms")]
    ttl_ms: Option<u64>,
}

/// The guest's `page`.
#[derive(ComponentType, Lift, Lower, Debug, Clone)]
#[component(record)]
pub(crate) struct GuestPage {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    next: Option<Vec<u8>>,
}

/// Fuel per operation: about a microsecond of the host's work (a lookup, a map update), as
/// wasm instructions go.
pub(crate) const FUEL_PER_OP: u64 = 1_000;
/// Fuel per byte a call moves across the boundary (keys, values, in and out).
pub(crate) const FUEL_PER_BYTE: u64 = 1;

type Ctx<'a> = StoreContextMut<'a, HostState>;

/// Takes `ops` operations and `bytes` bytes' worth of fuel from the call, or stops it as out of
/// fuel.
pub(crate) fn charge(store: &mut Ctx<'_>, ops: usize, bytes: usize) -> wasmtime::Result<()> {
    let cost = FUEL_PER_OP
        .saturating_mul(ops as u64)
        .saturating_add(FUEL_PER_BYTE.saturating_mul(bytes as u64));
    let left = store.get_fuel()?;
    if left < cost {
        store.set_fuel(0)?;
        return Err(Trap::OutOfFuel.into());
    }
    store.set_fuel(left - cost)?;
    Ok(())
}

/// The stage's state; a plugin that imports `state` always has one.
pub(crate) fn state(store: &Ctx<'_>) -> wasmtime::Result<std::sync::Arc<dyn KeyedState>> {
    store
        .data()
        .state
        .clone()
        .ok_or_else(|| wasmtime::Error::msg("this stage has no state"))
}

/// A key over [`MAX_KEY`] (or a value over [`MAX_VALUE`]) is refused before any work, and so
/// is a key of the host's ([`reserved`]).
pub(crate) fn sizes(key: &[u8], value: &[u8]) -> Result<(), Refusal> {
    if reserved(key) {
        return Err(Refusal::Limit(
            "keys that start with ff ff `weir.` are the host's".into(),
        ));
    }
    if key.len() > MAX_KEY {
        return Err(Refusal::Limit(format!(
            "a key of {} bytes is over the 1 KiB limit",
            key.len()
        )));
    }
    if value.len() > MAX_VALUE {
        return Err(Refusal::Limit(format!(
            "a value of {} bytes is over the 1 MiB limit",
            value.len()
        )));
    }
    Ok(())
}

/// Counts the call's refused writes, so the pipeline can tell a real `state-limit` failure
/// from a forged one.
pub(crate) fn refused<T>(store: &mut Ctx<'_>, result: Result<T, Refusal>) -> Result<T, StateError> {
    result.map_err(|r| {
        if matches!(r, Refusal::Limit(_)) {
            store.data_mut().state_refusals += 1;
        }
        StateError::from(r)
    })
}

fn set_one(store: &mut Ctx<'_>, entry: &Entry) -> wasmtime::Result<Result<(), StateError>> {
    charge(store, 1, entry.key.len() + entry.value.len())?;
    let result = sizes(&entry.key, &entry.value).and_then(|()| {
        let ttl = entry.ttl_ms.map(Duration::from_millis);
        state(store)
            .map_err(|e| Refusal::Limit(e.to_string()))?
            .set(&entry.key, &entry.value, ttl)
    });
    Ok(refused(store, result))
}

fn delete_one(store: &mut Ctx<'_>, key: &[u8]) -> wasmtime::Result<()> {
    charge(store, 1, key.len())?;
    if key.len() <= MAX_KEY && !reserved(key) {
        state(store)?.delete(key);
    }
    Ok(())
}

fn increment_one(
    store: &mut Ctx<'_>,
    key: &[u8],
    by: i64,
) -> wasmtime::Result<Result<i64, StateError>> {
    charge(store, 1, key.len() + 8)?;
    let result = sizes(key, &[]).and_then(|()| {
        state(store)
            .map_err(|e| Refusal::Limit(e.to_string()))?
            .increment(key, by)
    });
    Ok(refused(store, result))
}

/// Each value read, charged as it is gathered, up to [`MAX_REPLY_BYTES`] in all: past it the
/// call is stopped (the guest asked for more than one reply may carry).
fn get_each(store: &mut Ctx<'_>, keys: &[Vec<u8>]) -> wasmtime::Result<Vec<Option<Vec<u8>>>> {
    let keyed = state(store)?;
    let mut total = 0usize;
    let mut values = Vec::with_capacity(keys.len());
    for key in keys {
        charge(store, 1, key.len())?;
        let value = if key.len() > MAX_KEY || reserved(key) {
            None
        } else {
            keyed.get(key)
        };
        if let Some(v) = &value {
            total += v.len();
            if total > MAX_REPLY_BYTES {
                return Err(wasmtime::Error::msg(format!(
                    "a state reply over {} MiB: read fewer keys at once",
                    MAX_REPLY_BYTES >> 20
                )));
            }
            charge(store, 0, v.len())?;
        }
        values.push(value);
    }
    Ok(values)
}

fn scan(
    store: &mut Ctx<'_>,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: u32,
) -> wasmtime::Result<GuestPage> {
    let limit = (limit as usize).min(MAX_SCAN_ENTRIES);
    charge(
        store,
        1 + limit,
        prefix.len() + after.map_or(0, <[u8]>::len),
    )?;
    if prefix.len() > MAX_KEY || limit == 0 {
        return Ok(GuestPage {
            entries: Vec::new(),
            next: None,
        });
    }
    let page = state(store)?.scan(prefix, after, limit, MAX_REPLY_BYTES);
    let bytes: usize = page.entries.iter().map(|(k, v)| k.len() + v.len()).sum();
    charge(store, 0, bytes)?;
    // The cursor is the last key read, the host's included, so that the next page goes on
    // past them; the host's own entries are left out of the reply.
    let next = if page.more {
        page.entries.last().map(|(k, _)| k.clone())
    } else {
        None
    };
    let mut entries = page.entries;
    entries.retain(|(k, _)| !reserved(k));
    Ok(GuestPage { entries, next })
}

/// Links `weir:stage/state@0.3.0`. The lists a guest passes in are lifted before any of this
/// runs: they are bounded by the guest's own memory, under its stage's `memory` cap, and each
/// element is charged before the host acts on it.
pub(crate) fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    let mut i = linker.instance("weir:stage/state@0.3.0")?;
    i.func_wrap("get", |mut store: Ctx<'_>, (key,): (Vec<u8>,)| {
        Ok((get_each(&mut store, std::slice::from_ref(&key))?
            .pop()
            .flatten(),))
    })?;
    i.func_wrap(
        "get-many",
        |mut store: Ctx<'_>, (keys,): (Vec<Vec<u8>>,)| Ok((get_each(&mut store, &keys)?,)),
    )?;
    i.func_wrap("set", |mut store: Ctx<'_>, (entry,): (Entry,)| {
        Ok((set_one(&mut store, &entry)?,))
    })?;
    i.func_wrap(
        "set-many",
        |mut store: Ctx<'_>, (entries,): (Vec<Entry>,)| {
            let mut results = Vec::with_capacity(entries.len());
            for entry in &entries {
                results.push(set_one(&mut store, entry)?);
            }
            Ok((results,))
        },
    )?;
    i.func_wrap("delete", |mut store: Ctx<'_>, (key,): (Vec<u8>,)| {
        delete_one(&mut store, &key)
    })?;
    i.func_wrap(
        "delete-many",
        |mut store: Ctx<'_>, (keys,): (Vec<Vec<u8>>,)| {
            for key in &keys {
                delete_one(&mut store, key)?;
            }
            Ok(())
        },
    )?;
    i.func_wrap(
        "increment",
        |mut store: Ctx<'_>, (key, by): (Vec<u8>, i64)| Ok((increment_one(&mut store, &key, by)?,)),
    )?;
    i.func_wrap(
        "increment-many",
        |mut store: Ctx<'_>, (counts,): (Vec<(Vec<u8>, i64)>,)| {
            let mut results = Vec::with_capacity(counts.len());
            for (key, by) in &counts {
                results.push(increment_one(&mut store, key, *by)?);
            }
            Ok((results,))
        },
    )?;
    i.func_wrap(
        "scan",
        |mut store: Ctx<'_>, (prefix, after, limit): (Vec<u8>, Option<Vec<u8>>, u32)| {
            Ok((scan(&mut store, &prefix, after.as_deref(), limit)?,))
        },
    )?;
    Ok(())
}
