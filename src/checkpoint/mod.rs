//! Checkpoints: the whole optimizer (config, group learning rates, every parameter's state and
//! step) as one safetensors file or buffer, and the resharding of such files. The format is
//! described in `docs/checkpoint.md`.
//!
//! Built only on [`Optimizer`]'s public accessors (`params`, `state_size`, `read_state`,
//! `write_state`, `set_step`, the learning-rate setters), so every backend saves and loads alike
//! and a checkpoint written from one backend's handle loads into another's.
//!
//! - [`format`]: encoding and the backend-independent validation of a file;
//! - [`manifest`]: the metadata (magic, versions, config, per-parameter entries, checksums);
//! - [`snapshot`]: capturing a handle, checking that a checkpoint fits one, applying it;
//! - [`file`]: crash-safe writing and bounded reading;
//! - [`reshard`]: the shard rule, merging shard checkpoints, splitting a full one.

pub mod crc32;
pub mod file;
pub mod format;
mod json;
pub mod manifest;
pub mod reshard;
pub mod snapshot;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path as FsPath;

use crate::config::{Config, ParamOverrides, Path};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::optimizer::Optimizer;
use crate::state::{layout, StateKind};

/// A checkpoint in memory. Arrays borrow from the file's bytes after [`format::decode`] and
/// own their bytes after [`snapshot::capture`].
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint<'a> {
    /// The version of the format the data was read from (the current one when captured).
    pub format_version: u32,
    /// The library version that wrote it (informational).
    pub library_version: String,
    pub config: Config,
    /// Learning rate of every parameter group.
    pub groups: BTreeMap<u32, f64>,
    pub params: Vec<ParamRecord<'a>>,
}

/// One parameter and its arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamRecord<'a> {
    pub numel: u64,
    pub dtype: Dtype,
    pub path: Path,
    pub step: u64,
    pub overrides: ParamOverrides,
    /// The key of its stochastic rounding (rule 19; `Param::rounding_key`).
    pub rounding_key: u64,
    /// Exactly the arrays [`kinds`] lists, in that order, as little-endian bytes.
    pub arrays: Vec<(StateKind, Cow<'a, [u8]>)>,
}

/// The arrays a parameter of `numel` elements on `path` keeps under `cfg`: kind, bytes per
/// element, element count (bitsandbytes' keys; see [`crate::state::layout`]).
pub fn kinds(cfg: &Config, path: Path, numel: u64) -> Vec<(StateKind, u64, u64)> {
    StateKind::ALL
        .into_iter()
        .filter_map(|k| {
            layout(path, numel, k, cfg.clips_percentile(), cfg.max_unorm > 0.0)
                .map(|(size, count)| (k, size, count))
        })
        .collect()
}

/// Writes the optimizer to `path`, crash-safely: the previous file stays intact until the new
/// one is complete and on disk.
pub fn save(opt: &Optimizer, path: &FsPath) -> Result<()> {
    let ck = snapshot::capture(opt)?;
    let encoded = format::encode(&ck)?;
    file::write_atomic(path, |f, tmp| encoded.write_file(f, tmp))
}

/// Loads `path` into `opt`; on any error `opt` is unchanged.
pub fn load(opt: &mut Optimizer, path: &FsPath) -> Result<()> {
    let bytes = file::read(path)?;
    load_bytes(opt, &bytes).map_err(|e| in_file(e, path))
}

/// The size in bytes of the checkpoint file `opt` would be saved as now.
pub fn serialized_len(opt: &Optimizer) -> Result<u64> {
    Ok(format::encode(&snapshot::capture(opt)?)?.file_len())
}

/// The size of the checkpoint file, whose bytes are written into `buf` if they fit (a
/// smaller `buf` is left untouched).
pub fn serialize_into(opt: &Optimizer, buf: &mut [u8]) -> Result<u64> {
    let ck = snapshot::capture(opt)?;
    let encoded = format::encode(&ck)?;
    let len = encoded.file_len();
    if let Some(mut dst) = usize::try_from(len).ok().and_then(|l| buf.get_mut(..l)) {
        encoded
            .write_to(&mut dst)
            .map_err(|e| Error::Panic(format!("the checkpoint outgrew its computed size: {e}")))?;
    }
    Ok(len)
}

/// Loads checkpoint bytes into `opt`: everything is validated first; on any error `opt` is
/// unchanged.
pub fn load_bytes(opt: &mut Optimizer, bytes: &[u8]) -> Result<()> {
    let ck = format::decode(bytes)?;
    snapshot::check_fits(&ck, opt)?;
    snapshot::apply(&ck, opt)
}

/// Prefixes a validation message with the file it is about.
pub fn in_file(e: Error, path: &FsPath) -> Error {
    let wrap = |m: String| format!("{}: {m}", path.display());
    match e {
        Error::Corrupt(m) => Error::Corrupt(wrap(m)),
        Error::Mismatch(m) => Error::Mismatch(wrap(m)),
        Error::Unsupported(m) => Error::Unsupported(wrap(m)),
        other => other,
    }
}
