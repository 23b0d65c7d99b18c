//! The file format: a safetensors file whose tensors are `param.<i>.<key>` (bitsandbytes' keys,
//! 1-D, U8 codes and F32 everything else) and whose metadata is the [`Manifest`].
//!
//! [`decode`] checks everything that does not depend on a handle: the header length against
//! the data, the safetensors structure, the manifest, that every parameter has exactly the
//! arrays its path keeps with the right dtype and shape, every checksum, and the maps.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::Path as FsPath;

use safetensors::tensor::{Dtype as StDtype, Metadata};
use safetensors::SafeTensors;

use super::crc32::crc32;
use super::manifest::{path_name, version_for, Manifest, ParamEntry};
use super::{kinds, Checkpoint, ParamRecord};
use crate::error::{Error, Result};
use crate::qmap::{SIGNED_BITS, UNSIGNED_BITS};
use crate::rounding::default_key;
use crate::state::{as_bytes, negative_magnitude, StateKind};

/// The tensor name of array `kind` of parameter `i`.
pub fn tensor_name(i: usize, kind: StateKind) -> String {
    format!("param.{i}.{}", kind.name())
}

fn st_dtype(elem_size: u64) -> StDtype {
    if elem_size == 1 {
        StDtype::U8
    } else {
        StDtype::F32
    }
}

/// The largest header safetensors' reader accepts (its `MAX_HEADER_SIZE`, not exported).
const MAX_HEADER_BYTES: usize = 100_000_000;

/// A checkpoint laid out as a safetensors file: the length-prefixed header, then the arrays in
/// file order, each borrowed from where it lives. Writing copies every array exactly once, so
/// saving needs no buffer the size of the file.
///
/// The bytes depend only on the checkpoint: metadata keys are sorted and arrays are ordered by
/// element size (F32 before U8, so every F32 array stays 4-byte aligned), then parameter, then
/// bitsandbytes' key order.
pub struct Encoded<'c> {
    header: Vec<u8>,
    arrays: Vec<&'c [u8]>,
}

impl Encoded<'_> {
    /// The size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        let data: usize = self.arrays.iter().map(|a| a.len()).sum();
        (self.header.len() + data) as u64
    }

    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        w.write_all(&self.header)?;
        self.arrays.iter().try_for_each(|a| w.write_all(a))
    }

    /// Writes the file into `file` (named `path` in messages); no durability (see
    /// [`super::file::write_atomic`]). Arrays of at least [`WRITE_BUFFER`] bytes go to the
    /// file directly, smaller ones are gathered in a buffer of that size, allocated fallibly
    /// (`BNB_ERR_OUT_OF_MEMORY`), so a file of many small arrays takes few writes.
    pub fn write_file(&self, file: &File, path: &FsPath) -> Result<()> {
        let mut buf = Vec::new();
        buf.try_reserve_exact(WRITE_BUFFER).map_err(|_| {
            Error::OutOfMemory(format!(
                "cannot allocate the {WRITE_BUFFER}-byte write buffer"
            ))
        })?;
        let mut w = file;
        let mut put = |part: &[u8]| -> std::io::Result<()> {
            if buf.len() + part.len() > WRITE_BUFFER {
                w.write_all(&buf)?;
                buf.clear();
            }
            if part.len() >= WRITE_BUFFER {
                w.write_all(part)
            } else {
                buf.extend_from_slice(part);
                Ok(())
            }
        };
        std::iter::once(&self.header[..])
            .chain(self.arrays.iter().copied())
            .try_for_each(&mut put)
            .and_then(|()| w.write_all(&buf))
            .map_err(|e| Error::Io(format!("{}: write: {e}", path.display())))
    }
}

/// The size of the buffer that [`Encoded::write_file`] gathers small arrays in.
pub const WRITE_BUFFER: usize = 1 << 20;

/// Lays `ck` out, computing every checksum (one read of each array).
pub fn encode<'c>(ck: &'c Checkpoint<'_>) -> Result<Encoded<'c>> {
    let mut placed: Vec<(u64, usize, StateKind, &[u8], u64)> = Vec::new();
    let mut entries = Vec::with_capacity(ck.params.len());
    for (i, p) in ck.params.iter().enumerate() {
        let expected = kinds(&ck.config, p.path, p.numel);
        if p.arrays.len() != expected.len() {
            return Err(Error::Panic(format!(
                "parameter {i}: has {} arrays, its layout {}",
                p.arrays.len(),
                expected.len()
            )));
        }
        let mut crcs = Vec::with_capacity(expected.len());
        for ((kind, bytes), &(want, size, count)) in p.arrays.iter().zip(&expected) {
            if *kind != want || bytes.len() as u64 != size * count {
                return Err(Error::Panic(format!(
                    "parameter {i}: array {} does not match its layout",
                    kind.name()
                )));
            }
            crcs.push((*kind, crc32(bytes)));
            placed.push((size, i, *kind, bytes, count));
        }
        entries.push(ParamEntry {
            numel: p.numel,
            dtype: p.dtype,
            path: p.path,
            step: p.step,
            overrides: p.overrides,
            rounding_key: Some(p.rounding_key),
            crc32: crcs,
        });
    }
    let manifest = Manifest {
        format_version: version_for(&ck.config, ck.params.iter().map(|p| &p.overrides)),
        library_version: env!("CARGO_PKG_VERSION").to_string(),
        config: ck.config,
        groups: ck.groups.clone(),
        params: entries,
    };
    let metadata = manifest.to_metadata();
    // Stable: equal sizes keep parameter order, and each parameter's arrays come in key order.
    placed.sort_by_key(|&(size, ..)| std::cmp::Reverse(size));

    let json_err = |e: serde_json::Error| Error::Panic(format!("encoding the header: {e}"));
    let mut json = String::from("{\"__metadata__\":");
    json.push_str(&serde_json::to_string(&metadata).map_err(json_err)?);
    let mut offset = 0u64;
    for &(size, i, kind, _, count) in &placed {
        let end = offset + size * count;
        let name = serde_json::to_string(&tensor_name(i, kind)).map_err(json_err)?;
        let dtype = st_dtype(size);
        json.push_str(&format!(
            ",{name}:{{\"dtype\":\"{dtype}\",\"shape\":[{count}],\"data_offsets\":[{offset},{end}]}}"
        ));
        offset = end;
    }
    json.push('}');
    // Padded with spaces to a multiple of 8, as safetensors' writer does, so the data starts
    // 8-byte aligned in the file.
    let header_len = json.len().next_multiple_of(8);
    if header_len > MAX_HEADER_BYTES {
        return Err(Error::Unsupported(format!(
            "the checkpoint's metadata takes {header_len} bytes, over safetensors' limit of \
             {MAX_HEADER_BYTES} (too many parameters for one file)"
        )));
    }
    let mut header = Vec::with_capacity(8 + header_len);
    header.extend_from_slice(&(header_len as u64).to_le_bytes());
    header.extend_from_slice(json.as_bytes());
    header.resize(8 + header_len, b' ');
    Ok(Encoded {
        header,
        arrays: placed
            .into_iter()
            .map(|(_, _, _, bytes, _)| bytes)
            .collect(),
    })
}

/// Parses and validates checkpoint bytes; arrays borrow from `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Checkpoint<'_>> {
    let corrupt = |m: String| Error::Corrupt(m);
    // Checked here, before safetensors sees it, so the message is precise and nothing is ever
    // sized by a length field that the data does not back.
    let len = bytes.len() as u64;
    let Some(head) = bytes.first_chunk::<8>() else {
        return Err(corrupt(format!(
            "{len} bytes is too short for a checkpoint (the header length alone takes 8)"
        )));
    };
    let header_len = u64::from_le_bytes(*head);
    if header_len > len - 8 {
        return Err(corrupt(format!(
            "header length {header_len} exceeds the {} bytes that follow it (truncated or damaged file)",
            len - 8
        )));
    }
    let (n, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| corrupt(format!("not a valid safetensors file: {e}")))?;
    let data = &bytes[8 + n..];
    let manifest = Manifest::from_metadata(meta.metadata().as_ref())?;
    let mut params = Vec::with_capacity(manifest.params.len());
    let mut tensors_used = 0;
    let mut same_size: HashMap<u64, u32> = HashMap::new();
    for (i, entry) in manifest.params.iter().enumerate() {
        check_entry(&manifest, i, entry)?;
        let rounding_key = resolve_key(&mut same_size, i, entry)?;
        let arrays = arrays(&manifest, &meta, data, i, entry)?;
        tensors_used += arrays.len();
        params.push(ParamRecord {
            numel: entry.numel,
            dtype: entry.dtype,
            path: entry.path,
            step: entry.step,
            overrides: entry.overrides,
            rounding_key,
            arrays,
        });
    }
    let stored = meta.tensors().len();
    if stored != tensors_used {
        return Err(corrupt(format!(
            "the file holds {stored} tensors, its parameters account for {tensors_used}"
        )));
    }
    let used: BTreeSet<u32> = params.iter().map(|p| p.overrides.group).collect();
    if let Some(g) = manifest.groups.keys().find(|g| !used.contains(g)) {
        return Err(corrupt(format!("groups: group {g} has no parameter")));
    }
    Ok(Checkpoint {
        format_version: manifest.format_version,
        library_version: manifest.library_version,
        config: manifest.config,
        groups: manifest.groups,
        params,
    })
}

/// The rounding key of entry `i`, as the handle that registered the same parameters in the
/// same order gives it (`same_size` counts the entries before it per full tensor size); a
/// stored key (version 2) must be that one.
fn resolve_key(same_size: &mut HashMap<u64, u32>, i: usize, e: &ParamEntry) -> Result<u64> {
    let full = e.overrides.full_numel(e.numel);
    let ordinal = same_size.entry(full).or_insert(0);
    let want = e
        .overrides
        .rounding_key
        .unwrap_or_else(|| default_key(full, *ordinal));
    *ordinal += 1;
    match e.rounding_key {
        Some(stored) if stored != want => Err(Error::Corrupt(format!(
            "parameter {i}.key: {stored:#x}, but its overrides and position give {want:#x}"
        ))),
        _ => Ok(want),
    }
}

/// The entry's own consistency: sizes, overrides, the path its config and size imply.
fn check_entry(m: &Manifest, i: usize, e: &ParamEntry) -> Result<()> {
    let bad =
        |field: &str, why: String| Err(Error::Corrupt(format!("parameter {i}.{field}: {why}")));
    if e.numel == 0 {
        return bad("numel", "is 0".into());
    }
    if !m.groups.contains_key(&e.overrides.group) {
        return bad(
            "group",
            format!("{} is not in the groups list", e.overrides.group),
        );
    }
    if let Err(err) = e.overrides.resolve(&m.config) {
        return bad("overrides", err.to_string());
    }
    if let Some(s) = e.overrides.shard {
        if let Err(why) = s.check_slice(e.numel) {
            return bad("shard", why);
        }
    }
    match e.overrides.path(&m.config, e.numel) {
        Ok(p) if p == e.path => Ok(()),
        Ok(p) => bad(
            "path",
            format!(
                "`{}` contradicts its size and config, which give `{}`",
                path_name(e.path),
                path_name(p)
            ),
        ),
        Err(err) => bad("overrides", err.to_string()),
    }
}

/// The arrays of parameter `i`: present, of the expected dtype and shape, checksums equal,
/// maps equal to the library's.
fn arrays<'d>(
    m: &Manifest,
    meta: &Metadata,
    data: &'d [u8],
    i: usize,
    e: &ParamEntry,
) -> Result<Vec<(StateKind, Cow<'d, [u8]>)>> {
    let expected = kinds(&m.config, e.path, e.numel);
    let listed: Vec<StateKind> = e.crc32.iter().map(|(k, _)| *k).collect();
    let wanted: Vec<StateKind> = expected.iter().map(|(k, _, _)| *k).collect();
    if listed != wanted {
        let names = |v: &[StateKind]| v.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ");
        return Err(Error::Corrupt(format!(
            "parameter {i}.crc32: lists [{}], its path `{}` keeps [{}]",
            names(&listed),
            path_name(e.path),
            names(&wanted)
        )));
    }
    let mut out = Vec::with_capacity(expected.len());
    for (&(kind, size, count), &(_, crc)) in expected.iter().zip(&e.crc32) {
        let name = tensor_name(i, kind);
        let field = |why: String| Error::Corrupt(format!("parameter {i}.{}: {why}", kind.name()));
        let info = meta
            .info(&name)
            .ok_or_else(|| field(format!("tensor `{name}` is missing")))?;
        if info.dtype != st_dtype(size) {
            return Err(field(format!(
                "dtype {} (expected {})",
                info.dtype,
                st_dtype(size)
            )));
        }
        if info.shape.len() != 1 || info.shape[0] as u64 != count {
            return Err(field(format!(
                "shape {:?} (expected [{count}])",
                info.shape
            )));
        }
        let (start, end) = info.data_offsets;
        let bytes = data
            .get(start..end)
            .ok_or_else(|| field("data offsets outside the file".into()))?;
        let actual = crc32(bytes);
        if actual != crc {
            return Err(field(format!(
                "checksum mismatch (stored {crc:08x}, computed {actual:08x}): the data is damaged"
            )));
        }
        if let Some((at, x)) = negative_magnitude(kind, bytes) {
            return Err(field(format!(
                "element {at} is {x}, a negative magnitude no step produces"
            )));
        }
        let ours = match kind {
            StateKind::Qmap1 => Some(as_bytes(&SIGNED_BITS)),
            StateKind::Qmap2 => Some(as_bytes(&UNSIGNED_BITS)),
            _ => None,
        };
        if ours.is_some_and(|ours| ours != bytes) {
            return Err(Error::Mismatch(format!(
                "parameter {i}.{}: differs from the library's map; codes encoded with another map \
                 cannot be stepped with this one",
                kind.name()
            )));
        }
        out.push((kind, Cow::Borrowed(bytes)));
    }
    Ok(out)
}
