//! Sharding (ZeRO-1 / FSDP style): the rule that cuts a flattened tensor into `world`
//! contiguous, block-aligned slices, and the merge and split of checkpoints along it.
//!
//! The rule ([`shard_range`]): the tensor's `ceil(full_numel / 256)` blocks are dealt out in
//! order, every rank getting `blocks / world` and the first `blocks % world` ranks one more;
//! only the last non-empty slice can end in a partial block. Ranks past the last block get an
//! empty slice, and because a parameter cannot have 0 elements, **a rank whose slice is empty
//! does not register that parameter**. Rank 0 is never empty, so rank 0's parameter list
//! enumerates every tensor, and merge finds each tensor's other slices from it.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::{Path as FsPath, PathBuf};

use super::{file, format, in_file, Checkpoint, ParamRecord};
use crate::config::{ParamOverrides, Shard, BLOCKSIZE};
use crate::error::{invalid, Error, Result};
use crate::optimizer::{Device, Optimizer};
use crate::state::StateKind;

/// `(offset, len)` of rank `rank`'s slice of a tensor of `full_numel` elements.
pub fn shard_range(full_numel: u64, rank: u32, world: u32) -> Result<(u64, u64)> {
    if full_numel == 0 {
        invalid!("full_numel must be at least 1");
    }
    if world == 0 || rank >= world {
        invalid!("rank {rank} is not in 0..world (world {world})");
    }
    let blocks = full_numel.div_ceil(BLOCKSIZE);
    let (base, extra) = (blocks / world as u64, blocks % world as u64);
    let r = rank as u64;
    let first = r * base + r.min(extra);
    let count = base + u64::from(r < extra);
    // Only the slice that holds the last block ends at full_numel; the others end below it,
    // so no product here can overflow even for full_numel near 2^64.
    let bound = |block: u64| {
        if block == blocks {
            full_numel
        } else {
            block * BLOCKSIZE
        }
    };
    let (offset, end) = (bound(first), bound(first + count));
    Ok((offset, end - offset))
}

/// `<prefix>.<rank>-of-<world>.safetensors`.
pub fn shard_file_name(prefix: &FsPath, rank: u32, world: u32) -> PathBuf {
    let mut name = prefix.as_os_str().to_os_string();
    name.push(format!(".{rank}-of-{world}.safetensors"));
    PathBuf::from(name)
}

/// Elements per entry of an array that is cut with the tensor, or `None` for the maps, which
/// every slice holds whole. Other arrays summarise the whole tensor and cannot be cut; the
/// shard rules of `Optimizer::add_param` keep them out of shards.
fn unit(kind: StateKind, i: usize) -> Result<Option<u64>> {
    match kind {
        StateKind::State1 | StateKind::State2 => Ok(Some(1)),
        StateKind::Absmax1 | StateKind::Absmax2 => Ok(Some(BLOCKSIZE)),
        StateKind::Qmap1 | StateKind::Qmap2 => Ok(None),
        _ => Err(Error::Unsupported(format!(
            "parameter {i}: {} spans the whole tensor and cannot be sharded",
            kind.name()
        ))),
    }
}

fn mismatch(m: String) -> Error {
    Error::Mismatch(m)
}

/// One checkpoint from the checkpoints of ranks `0..shards.len()` (their order is the rank
/// order). Every parameter must be a shard cut by [`shard_range`] with `world = shards.len()`;
/// all ranks must share config, group learning rates, and each tensor's step and overrides.
pub fn merge<'a>(shards: &[Checkpoint<'a>]) -> Result<Checkpoint<'a>> {
    let Some(first) = shards.first() else {
        invalid!("merge needs at least one shard checkpoint");
    };
    let world = u32::try_from(shards.len())
        .map_err(|_| Error::InvalidArgument("too many shards".into()))?;
    // A rank may lack a group whose tensors have no slice there; the others must agree.
    let mut groups = first.groups.clone();
    for (r, s) in shards.iter().enumerate().skip(1) {
        if s.config != first.config {
            return Err(mismatch(format!("rank {r}: config differs from rank 0's")));
        }
        for (&g, &lr) in &s.groups {
            let seen = *groups.entry(g).or_insert(lr);
            if seen != lr {
                return Err(mismatch(format!(
                    "rank {r}: group {g} has learning rate {lr}, another rank {seen}"
                )));
            }
        }
    }
    let mut cursor = vec![0usize; shards.len()];
    let mut params = Vec::with_capacity(first.params.len());
    for (j, head) in first.params.iter().enumerate() {
        let Some(Shard { full_numel, .. }) = head.overrides.shard else {
            return Err(mismatch(format!(
                "rank 0 parameter {j} is not a shard; merge takes shard checkpoints only"
            )));
        };
        let mut slices = Vec::new();
        for (r, s) in shards.iter().enumerate() {
            let (offset, len) = shard_range(full_numel, r as u32, world)?;
            if len == 0 {
                continue;
            }
            let k = cursor[r];
            let p = s.params.get(k).ok_or_else(|| {
                mismatch(format!(
                    "rank {r} has no parameter {k}, but tensor {j} of {full_numel} elements has a slice there"
                ))
            })?;
            cursor[r] += 1;
            let want = Some(Shard { full_numel, offset });
            if p.overrides.shard != want || p.numel != len {
                return Err(mismatch(format!(
                    "rank {r} parameter {k}: shard {:?} of {} elements, expected offset {offset} and {len} \
                     elements of {full_numel} (bnb_shard_range with world {world})",
                    p.overrides.shard, p.numel
                )));
            }
            let same = |a: &ParamRecord, b: &ParamRecord| {
                a.dtype == b.dtype
                    && a.path == b.path
                    && a.step == b.step
                    && a.rounding_key == b.rounding_key
                    && ParamOverrides {
                        shard: None,
                        ..a.overrides
                    } == ParamOverrides {
                        shard: None,
                        ..b.overrides
                    }
            };
            if !same(p, head) {
                return Err(mismatch(format!(
                    "rank {r} parameter {k}: dtype, path, step, overrides or rounding key differ from rank 0 parameter {j}"
                )));
            }
            slices.push(p);
        }
        params.push(join(j, head, &slices, full_numel)?);
    }
    if let Some((r, &k)) = cursor
        .iter()
        .enumerate()
        .find(|&(r, &k)| k != shards[r].params.len())
    {
        return Err(mismatch(format!(
            "rank {r} has {} parameters, but the tensors of rank 0 account for {k}",
            shards[r].params.len()
        )));
    }
    Ok(Checkpoint {
        format_version: super::manifest::FORMAT_VERSION,
        library_version: env!("CARGO_PKG_VERSION").to_string(),
        config: first.config,
        groups,
        params,
    })
}

/// The full tensor from its slices in rank order (the maps borrowed from rank 0, the cut
/// arrays joined into buffers allocated fallibly).
fn join<'a>(
    j: usize,
    head: &ParamRecord<'a>,
    slices: &[&ParamRecord<'_>],
    full_numel: u64,
) -> Result<ParamRecord<'a>> {
    let mut arrays = Vec::with_capacity(head.arrays.len());
    for (a, (kind, bytes)) in head.arrays.iter().enumerate() {
        if unit(*kind, j)?.is_none() {
            arrays.push((*kind, bytes.clone()));
            continue;
        }
        let mut parts = Vec::with_capacity(slices.len());
        for s in slices {
            match s.arrays.get(a) {
                Some((k, b)) if k == kind => parts.push(&b[..]),
                _ => {
                    return Err(mismatch(format!(
                        "tensor {j}: its slices keep different arrays"
                    )))
                }
            }
        }
        let mut whole = Vec::new();
        let len = parts.iter().map(|p| p.len()).sum::<usize>();
        whole.try_reserve_exact(len).map_err(|_| {
            Error::OutOfMemory(format!(
                "tensor {j}: cannot allocate {len} bytes for its merged {}",
                kind.name()
            ))
        })?;
        parts.iter().for_each(|p| whole.extend_from_slice(p));
        arrays.push((*kind, Cow::Owned(whole)));
    }
    Ok(ParamRecord {
        numel: full_numel,
        overrides: ParamOverrides {
            shard: None,
            ..head.overrides
        },
        arrays,
        ..*head
    })
}

/// Rank `rank`'s checkpoint out of a full (unsharded) one; arrays borrow from `full`.
pub fn split<'a>(full: &'a Checkpoint<'_>, rank: u32, world: u32) -> Result<Checkpoint<'a>> {
    // Only for its shard rules, which decide what may be sharded under this config.
    let rules = Optimizer::new(full.config, Device::Cpu, 0)?;
    let mut params = Vec::new();
    for (i, p) in full.params.iter().enumerate() {
        if p.overrides.shard.is_some() {
            return Err(mismatch(format!(
                "parameter {i} is already a shard; merge the shards first"
            )));
        }
        let (offset, len) = shard_range(p.numel, rank, world)?;
        if len == 0 {
            continue;
        }
        let shard = Shard {
            full_numel: p.numel,
            offset,
        };
        rules
            .check_shard(shard, len, p.path)
            .map_err(|e| Error::Unsupported(format!("parameter {i}: {e}")))?;
        let mut arrays = Vec::with_capacity(p.arrays.len());
        for (kind, bytes) in &p.arrays {
            let slice: &[u8] = match unit(*kind, i)? {
                None => bytes,
                Some(unit) => {
                    let elem = (bytes.len() as u64) / p.numel.div_ceil(unit);
                    let first = offset / unit;
                    let last = (offset + len).div_ceil(unit);
                    bytes
                        .get((first * elem) as usize..(last * elem) as usize)
                        .ok_or_else(|| {
                            Error::Panic(format!(
                                "parameter {i}: {} is shorter than its layout",
                                kind.name()
                            ))
                        })?
                }
            };
            arrays.push((*kind, Cow::Borrowed(slice)));
        }
        params.push(ParamRecord {
            numel: len,
            overrides: ParamOverrides {
                shard: Some(shard),
                ..p.overrides
            },
            arrays,
            ..*p
        });
    }
    // Groups whose tensors have no slice on this rank do not exist in its handle.
    let used: BTreeSet<u32> = params.iter().map(|p| p.overrides.group).collect();
    let groups = full
        .groups
        .iter()
        .filter(|(g, _)| used.contains(g))
        .map(|(&g, &lr)| (g, lr))
        .collect();
    Ok(Checkpoint {
        params,
        groups,
        library_version: full.library_version.clone(),
        ..*full
    })
}

/// Reads and validates every input file (bounded by the files' sizes).
fn read_all(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>> {
    paths.iter().map(|p| file::read(p)).collect()
}

/// Merges the shard checkpoint files of ranks `0..inputs.len()` into `out`.
pub fn merge_files(inputs: &[PathBuf], out: &FsPath) -> Result<()> {
    let bytes = read_all(inputs)?;
    let shards = bytes
        .iter()
        .zip(inputs)
        .map(|(b, p)| format::decode(b).map_err(|e| in_file(e, p)))
        .collect::<Result<Vec<_>>>()?;
    let merged = merge(&shards)?;
    let encoded = format::encode(&merged)?;
    file::write_atomic(out, |f, tmp| encoded.write_file(f, tmp))
}

/// The most files one split writes (a bound on the time of a mistaken call).
pub const MAX_SPLIT_WORLD: u32 = 1 << 16;

/// Splits the full checkpoint `input` into `world` files named by [`shard_file_name`].
/// Every part is built and encoded once before the first file is written, so a checkpoint
/// that cannot be split writes nothing; then each part is built again and written (parts
/// borrow from the input, so only one is held at a time). Each file is replaced atomically; an
/// I/O error part-way leaves the files of the ranks before it written. Returns the paths in
/// rank order.
pub fn split_file(input: &FsPath, world: u32, prefix: &FsPath) -> Result<Vec<PathBuf>> {
    if !(1..=MAX_SPLIT_WORLD).contains(&world) {
        invalid!("world {world} is not in 1..={MAX_SPLIT_WORLD}");
    }
    let bytes = file::read(input)?;
    let full = format::decode(&bytes).map_err(|e| in_file(e, input))?;
    for r in 0..world {
        format::encode(&split(&full, r, world)?)?;
    }
    let mut written = Vec::with_capacity(world as usize);
    for r in 0..world {
        let part = split(&full, r, world)?;
        let encoded = format::encode(&part)?;
        let path = shard_file_name(prefix, r, world);
        file::write_atomic(&path, |f, tmp| encoded.write_file(f, tmp))?;
        written.push(path);
    }
    Ok(written)
}
