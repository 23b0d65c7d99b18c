//! Checkpoints and sharding through the C ABI: argument checks, then `crate::checkpoint`.

use std::ffi::{c_char, c_void, CStr};
use std::path::PathBuf;

use super::types::*;
use super::{arg, bnb_adam8bit_t, c_array, guard, out_arg};
use crate::checkpoint::{self, reshard};
use crate::error::{invalid, Result};

/// A path from a non-NULL, non-empty C string (any bytes but NUL on Unix; UTF-8 elsewhere).
///
/// # Safety
/// A non-NULL `p` must point to a NUL-terminated string.
unsafe fn c_path(p: *const c_char, name: &str) -> Result<PathBuf> {
    if p.is_null() {
        invalid!("{name} is NULL");
    }
    let bytes = CStr::from_ptr(p).to_bytes();
    if bytes.is_empty() {
        invalid!("{name} is empty");
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    }
    #[cfg(not(unix))]
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(PathBuf::from(s)),
        Err(_) => invalid!("{name} is not UTF-8"),
    }
}

/// Saves the whole optimizer (config, group learning rates, every parameter's state and step)
/// to `path` as a safetensors file (docs/checkpoint.md). The file is replaced atomically: a
/// temporary file beside it is written and fsynced, exchanged with the previous file, and the
/// directory is fsynced, so a crash leaves the previous checkpoint or the new one, complete.
/// On an error the previous checkpoint is in place and no temporary file is left (on a file
/// system without an atomic exchange, a failed fsync of the directory leaves the new file).
/// Errors: `BNB_ERR_IO` (the file system), `BNB_ERR_INVALID_ARGUMENT` (a path without a file
/// name), `BNB_ERR_OUT_OF_MEMORY` (the 1 MiB write buffer, or the host copy of a CUDA handle's
/// state; a CPU handle's state is written in place),
/// `BNB_ERR_UNSUPPORTED` (metadata over safetensors' 100 MB
/// header limit), `BNB_ERR_CUDA` (reading a CUDA handle's state).
///
/// On a poisoned handle (`BNB_ERR_PANIC`, whose state may be half-updated) nothing is written:
/// no temporary file, and a checkpoint already at `path` stays as it was.
///
/// # Safety
/// `h` must be a live handle or NULL; `path` a NUL-terminated string or NULL.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_save(
    h: *const bnb_adam8bit_t,
    path: *const c_char,
) -> bnb_status_t {
    guard(|| {
        let opt = arg(h, "handle")?.lock()?;
        let path = c_path(path, "path")?;
        checkpoint::save(&opt, &path)
    })
}

/// Loads a checkpoint written by `bnb_adam8bit_save` into a handle with the same parameters
/// registered in the same order. The checkpoint's `lr` and group learning rates replace the
/// handle's; every other config value must be equal (`is_paged` and the device may differ).
///
/// Everything is validated before the handle changes (the file is read into memory whole for
/// that); on any error the handle is exactly as before: `BNB_ERR_IO` (cannot read),
/// `BNB_ERR_CORRUPT` (damaged or not a checkpoint), `BNB_ERR_MISMATCH` (valid but does not fit
/// this handle; the message names the parameter and field), `BNB_ERR_OUT_OF_MEMORY` (no room
/// for the file), `BNB_ERR_INVALID_ARGUMENT` (a NULL argument). One exception on a CUDA
/// handle: a device failure during the host-to-device copies (`BNB_ERR_CUDA`, which can also
/// report an earlier asynchronous error of the device) may leave part of the checkpoint
/// loaded; destroy the handle then.
///
/// # Safety
/// `h` must be a live handle or NULL; `path` a NUL-terminated string or NULL.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_load(
    h: *mut bnb_adam8bit_t,
    path: *const c_char,
) -> bnb_status_t {
    guard(|| {
        let mut opt = arg(h, "handle")?.lock()?;
        let path = c_path(path, "path")?;
        checkpoint::load(&mut opt, &path)
    })
}

/// The exact size in bytes of what `bnb_adam8bit_serialize` writes now. It reads every state
/// array once (the header holds their checksums); a CUDA handle's state is copied to host
/// memory for that.
///
/// # Safety
/// `h` must be a live handle or NULL; `out_bytes` writable or NULL.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_serialized_size(
    h: *const bnb_adam8bit_t,
    out_bytes: *mut u64,
) -> bnb_status_t {
    guard(|| {
        let opt = arg(h, "handle")?.lock()?;
        let out = out_arg(out_bytes, "out_bytes")?;
        out.set(checkpoint::serialized_len(&opt)?);
        Ok(())
    })
}

/// Writes the checkpoint (the bytes of the file `bnb_adam8bit_save` would write) into `buf`,
/// which holds `buf_bytes` bytes, and its length to `*out_written`. `buf` must not be NULL
/// (`bnb_adam8bit_serialized_size` gives the size first). A buffer that is too small
/// is `BNB_ERR_INVALID_ARGUMENT`: nothing is written into it, and `*out_written` is the size
/// needed (which can differ from an earlier `bnb_adam8bit_serialized_size` if the handle
/// stepped meanwhile: the metadata holds the step counts and checksums).
///
/// # Safety
/// `h` must be a live handle or NULL; `buf` NULL or `buf_bytes` writable bytes; `out_written`
/// writable or NULL.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_serialize(
    h: *const bnb_adam8bit_t,
    buf: *mut c_void,
    buf_bytes: u64,
    out_written: *mut u64,
) -> bnb_status_t {
    guard(|| {
        let opt = arg(h, "handle")?.lock()?;
        let written = out_arg(out_written, "out_written")?;
        if buf.is_null() {
            invalid!("buf is NULL");
        }
        // No object exceeds isize::MAX bytes, so a larger count can only be shortened.
        let cap =
            usize::try_from(buf_bytes).map_or(isize::MAX as usize, |b| b.min(isize::MAX as usize));
        let len =
            checkpoint::serialize_into(&opt, std::slice::from_raw_parts_mut(buf.cast(), cap))?;
        written.set(len);
        if len > buf_bytes {
            invalid!(
                "buf holds {buf_bytes} bytes, the checkpoint needs {len} (now in *out_written)"
            );
        }
        Ok(())
    })
}

/// Loads a checkpoint from `bytes` bytes at `buf`, with the checks and guarantees of
/// `bnb_adam8bit_load` (except `BNB_ERR_IO`).
///
/// # Safety
/// `h` must be a live handle or NULL; `buf` NULL or `bytes` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_deserialize(
    h: *mut bnb_adam8bit_t,
    buf: *const c_void,
    bytes: u64,
) -> bnb_status_t {
    guard(|| {
        let mut opt = arg(h, "handle")?.lock()?;
        if buf.is_null() {
            invalid!("buf is NULL");
        }
        let len = usize::try_from(bytes)
            .ok()
            .filter(|&n| n <= isize::MAX as usize)
            .ok_or_else(|| {
                crate::error::Error::InvalidArgument(format!(
                    "{bytes} bytes exceed the address space"
                ))
            })?;
        checkpoint::load_bytes(&mut opt, std::slice::from_raw_parts(buf.cast::<u8>(), len))
    })
}

/// The slice `[*out_offset, *out_offset + *out_len)` that rank `rank` of `world` owns of a
/// flattened tensor of `full_numel` elements: the tensor's 256-element blocks are dealt out
/// in order, `blocks / world` to every rank and one more to each of the first
/// `blocks % world` ranks, so offsets are multiples of 256 and only the last non-empty slice
/// ends in a partial block. Register the slice with `bnb_adam8bit_add_param_ex`,
/// `BNB_OPT_SHARD`, `shard_full_numel = full_numel`, `shard_offset = *out_offset`.
/// `*out_len` is 0 for ranks past the last block (a tensor of fewer than `world` blocks): such
/// a rank does **not** register that tensor (rank 0 never gets an empty slice). Checkpoint
/// merge and split follow the same rule.
///
/// # Safety
/// `out_offset` and `out_len` writable or NULL.
#[no_mangle]
pub unsafe extern "C" fn bnb_shard_range(
    full_numel: u64,
    rank: u32,
    world: u32,
    out_offset: *mut u64,
    out_len: *mut u64,
) -> bnb_status_t {
    guard(|| {
        let (offset_out, len_out) = (
            out_arg(out_offset, "out_offset")?,
            out_arg(out_len, "out_len")?,
        );
        let (offset, len) = reshard::shard_range(full_numel, rank, world)?;
        offset_out.set(offset);
        len_out.set(len);
        Ok(())
    })
}

/// Merges the checkpoints of ranks `0 .. count-1` (`shard_paths[r]` is rank r's file, saved
/// from a handle whose parameters are all shards cut by `bnb_shard_range` with
/// `world = count`) into one checkpoint of the full tensors at `out_path`, loadable into a
/// single handle that registers every tensor whole. `BNB_ERR_MISMATCH` if the shards do not
/// fit together (the message names the rank and parameter); `out_path` is replaced as by
/// `bnb_adam8bit_save` (`BNB_ERR_IO`, `BNB_ERR_OUT_OF_MEMORY`: the output as it was).
///
/// # Safety
/// `shard_paths` NULL or `count` pointers to NUL-terminated strings; `out_path` likewise.
#[no_mangle]
pub unsafe extern "C" fn bnb_checkpoint_merge(
    shard_paths: *const *const c_char,
    count: usize,
    out_path: *const c_char,
) -> bnb_status_t {
    guard(|| {
        if count == 0 {
            invalid!("count must be at least 1");
        }
        let inputs = c_array(shard_paths, count, "shard_paths")?
            .iter()
            .enumerate()
            .map(|(r, &p)| c_path(p, &format!("shard_paths[{r}]")))
            .collect::<Result<Vec<_>>>()?;
        let out = c_path(out_path, "out_path")?;
        reshard::merge_files(&inputs, &out)
    })
}

/// Splits the full checkpoint `in_path` into `world` shard checkpoints
/// `<out_path_prefix>.<rank>-of-<world>.safetensors`, cut by `bnb_shard_range`; rank r's file
/// loads into a handle that registered rank r's non-empty slices in tensor order. `world` is
/// 1 to 65536. All parts are validated before the first is written; each file is replaced
/// atomically, and an I/O error part-way leaves the files of the earlier ranks written.
///
/// # Safety
/// `in_path` and `out_path_prefix` NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn bnb_checkpoint_split(
    in_path: *const c_char,
    world: u32,
    out_path_prefix: *const c_char,
) -> bnb_status_t {
    guard(|| {
        let input = c_path(in_path, "in_path")?;
        let prefix = c_path(out_path_prefix, "out_path_prefix")?;
        reshard::split_file(&input, world, &prefix).map(drop)
    })
}
