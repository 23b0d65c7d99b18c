//! Between a checkpoint and a live handle: capture one, check that a checkpoint fits one, and
//! apply it.
//!
//! Which differences a load accepts (documented in docs/checkpoint.md):
//! - `lr` and the group learning rates may differ: the checkpoint's values replace the
//!   handle's, as torch's `load_state_dict` restores `param_groups` (a scheduler sets its own
//!   rate after loading, as it would in PyTorch);
//! - `is_paged` and the device may differ: they place the state, they do not change it;
//! - everything else of the config, and every parameter's numel, dtype, path and overrides,
//!   must be equal, otherwise `BNB_ERR_MISMATCH` names the first difference.

use std::borrow::Cow;

use super::manifest::{path_name, FORMAT_VERSION};
use super::{kinds, Checkpoint, ParamRecord};
use crate::config::Config;
use crate::error::{try_vec, Error, Result};
use crate::optimizer::Optimizer;
use crate::state::StateKind;

/// Everything a checkpoint holds: host state borrowed in place (saving a CPU handle copies
/// nothing), device state copied to host memory.
pub fn capture(opt: &Optimizer) -> Result<Checkpoint<'_>> {
    let cfg = *opt.config();
    let mut params = Vec::with_capacity(opt.params().len());
    for (i, p) in opt.params().iter().enumerate() {
        let id = i as u32;
        let mut arrays = Vec::new();
        for (kind, _, _) in kinds(&cfg, p.path, p.numel) {
            if let Some(bytes) = opt.host_state(id, kind)? {
                arrays.push((kind, Cow::Borrowed(bytes)));
                continue;
            }
            let size = usize::try_from(opt.state_size(id, kind)?)
                .map_err(|_| Error::OutOfMemory("state larger than the address space".into()))?;
            let mut buf = try_vec(size, 0u8, kind.name())?;
            opt.read_state(id, kind, &mut buf)?;
            arrays.push((kind, Cow::Owned(buf)));
        }
        params.push(ParamRecord {
            numel: p.numel,
            dtype: p.dtype,
            path: p.path,
            step: opt.step_count(id)?,
            overrides: p.overrides,
            rounding_key: p.rounding_key,
            arrays,
        });
    }
    Ok(Checkpoint {
        format_version: FORMAT_VERSION,
        library_version: env!("CARGO_PKG_VERSION").to_string(),
        config: cfg,
        groups: opt.group_lrs().collect(),
        params,
    })
}

/// The config fields that must be equal, as text (f64's `Display` is exact and round-trips).
fn fixed_fields(c: &Config) -> [(&'static str, String); 13] {
    [
        ("beta1", c.beta1.to_string()),
        ("beta2", c.beta2.to_string()),
        ("eps", c.eps.to_string()),
        ("weight_decay", c.weight_decay.to_string()),
        ("max_unorm", c.max_unorm.to_string()),
        ("min_8bit_size", c.min_8bit_size.to_string()),
        ("optim_bits", c.optim_bits.to_string()),
        ("percentile_clipping", c.percentile_clipping.to_string()),
        ("amsgrad", c.amsgrad.to_string()),
        ("block_wise", c.block_wise.to_string()),
        ("skip_zeros", c.skip_zeros.to_string()),
        ("stochastic_rounding", c.stochastic_rounding.to_string()),
        ("seed", c.seed.to_string()),
    ]
}

/// What must be equal between a checkpoint's parameter and a registered one, as text.
fn param_fields(
    numel: u64,
    dtype: crate::dtype::Dtype,
    path: crate::config::Path,
    o: &crate::config::ParamOverrides,
    rounding_key: u64,
) -> [(&'static str, String); 16] {
    [
        ("numel", numel.to_string()),
        ("dtype", dtype.name().to_string()),
        ("path", path_name(path).to_string()),
        ("group", o.group.to_string()),
        ("lr_scale", format!("{:?}", o.lr_scale)),
        ("beta1", format!("{:?}", o.beta1)),
        ("beta2", format!("{:?}", o.beta2)),
        ("eps", format!("{:?}", o.eps)),
        ("weight_decay", format!("{:?}", o.weight_decay)),
        ("optim_bits", format!("{:?}", o.optim_bits)),
        ("min_8bit_size", format!("{:?}", o.min_8bit_size)),
        ("shard", format!("{:?}", o.shard)),
        (
            "stochastic_rounding",
            format!("{:?}", o.stochastic_rounding),
        ),
        ("seed", format!("{:?}", o.seed)),
        ("rounding_key override", format!("{:?}", o.rounding_key)),
        ("rounding key", format!("{rounding_key:#018x}")),
    ]
}

/// The first field whose two texts differ, as a mismatch naming `what`.
fn first_difference<const N: usize>(
    what: &str,
    ours: [(&'static str, String); N],
    theirs: [(&'static str, String); N],
) -> Result<()> {
    match ours.iter().zip(&theirs).find(|(a, b)| a.1 != b.1) {
        Some(((field, ck), (_, h))) => Err(Error::Mismatch(format!(
            "{what}.{field}: the checkpoint has {ck}, the handle {h}"
        ))),
        None => Ok(()),
    }
}

/// Whether `ck` can be loaded into `opt`, checked completely without changing it.
pub fn check_fits(ck: &Checkpoint<'_>, opt: &Optimizer) -> Result<()> {
    first_difference(
        "config",
        fixed_fields(&ck.config),
        fixed_fields(opt.config()),
    )?;
    let registered = opt.params();
    if ck.params.len() != registered.len() {
        return Err(Error::Mismatch(format!(
            "the checkpoint holds {} parameters, the handle has {} registered",
            ck.params.len(),
            registered.len()
        )));
    }
    for (i, (c, p)) in ck.params.iter().zip(registered).enumerate() {
        first_difference(
            &format!("parameter {i}"),
            param_fields(c.numel, c.dtype, c.path, &c.overrides, c.rounding_key),
            param_fields(p.numel, p.dtype, p.path, &p.overrides, p.rounding_key),
        )?;
        for (kind, bytes) in &c.arrays {
            let want = opt.state_size(i as u32, *kind).map_err(|_| {
                Error::Mismatch(format!(
                    "parameter {i}.{}: the handle keeps no such array",
                    kind.name()
                ))
            })?;
            if want != bytes.len() as u64 {
                return Err(Error::Mismatch(format!(
                    "parameter {i}.{}: {} bytes in the checkpoint, {want} in the handle",
                    kind.name(),
                    bytes.len()
                )));
            }
        }
        let held = kinds(opt.config(), p.path, p.numel).len();
        if held != c.arrays.len() {
            return Err(Error::Mismatch(format!(
                "parameter {i}: the handle keeps {held} arrays, the checkpoint {}",
                c.arrays.len()
            )));
        }
    }
    Ok(())
}

/// Writes a checkpoint that [`check_fits`] accepted. After that check only a device failure
/// can make a write fail. Arrays come first and learning rates last, as they cannot fail.
pub fn apply(ck: &Checkpoint<'_>, opt: &mut Optimizer) -> Result<()> {
    let mut written = false;
    for (i, c) in ck.params.iter().enumerate() {
        let id = i as u32;
        let arrays = c.arrays.iter().filter(|(kind, _)| {
            // The maps are constants that decode() already compared with the library's.
            !matches!(kind, StateKind::Qmap1 | StateKind::Qmap2)
        });
        for (kind, bytes) in arrays {
            opt.write_state(id, *kind, bytes).map_err(|e| {
                if written {
                    opt.partly_applied(e)
                } else {
                    e
                }
            })?;
            written = true;
        }
        opt.restore_step(id, c.step)
            .map_err(|e| if written { opt.partly_applied(e) } else { e })?;
        written = true;
    }
    opt.set_lr(ck.config.lr)?;
    for (&group, &lr) in &ck.groups {
        opt.set_group_lr(group, lr)?;
    }
    Ok(())
}
