//! The checkpoint's metadata (safetensors' `__metadata__`, a map of strings): magic, versions,
//! the handle config, group learning rates, and one entry per parameter with its step, size,
//! dtype, update path, overrides and the CRC-32 of each of its arrays. A CRC-32 over all of it
//! (`header_crc32`) makes a damaged number in the metadata an error instead of a silent change.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::crc32::crc32;
use super::json::{corrupt, parse, Fields};
use crate::config::{Config, ParamOverrides, Path, Shard};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::state::StateKind;

/// The magic: the value of the `format` key.
pub const FORMAT: &str = "libadam8bit-adam8bit-checkpoint";
/// The newest version this library writes. It loads every version from 1 up to this one.
pub const FORMAT_VERSION: u32 = 2;

/// The version a checkpoint is written in: 1 unless it uses stochastic rounding (rule 19),
/// whose settings version 2 added. A checkpoint without it is therefore exactly what earlier
/// libraries wrote, and they can still read it.
pub fn version_for<'a>(
    config: &Config,
    mut overrides: impl Iterator<Item = &'a ParamOverrides>,
) -> u32 {
    let rounds = config.stochastic_rounding
        || config.seed != 0
        || overrides.any(|o| {
            o.stochastic_rounding.is_some() || o.seed.is_some() || o.rounding_key.is_some()
        });
    if rounds {
        2
    } else {
        1
    }
}

/// What the metadata says about one parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamEntry {
    pub numel: u64,
    pub dtype: Dtype,
    pub path: Path,
    pub step: u64,
    pub overrides: ParamOverrides,
    /// The parameter's rounding key (rule 19); version 1 does not store it (`None` when read).
    pub rounding_key: Option<u64>,
    /// CRC-32 of each array the parameter stores, in the order of [`StateKind::ALL`].
    pub crc32: Vec<(StateKind, u32)>,
}

/// Everything the metadata holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub format_version: u32,
    pub library_version: String,
    pub config: Config,
    pub groups: BTreeMap<u32, f64>,
    pub params: Vec<ParamEntry>,
}

pub fn path_name(p: Path) -> &'static str {
    match p {
        Path::Blockwise8 => "blockwise8",
        Path::Dynamic8 => "dynamic8",
        Path::Fp32 => "fp32",
    }
}

fn path_from_name(name: &str) -> Option<Path> {
    [Path::Blockwise8, Path::Dynamic8, Path::Fp32]
        .into_iter()
        .find(|&p| path_name(p) == name)
}

/// The keys whose values the header checksum covers, in order.
pub const COVERED: [&str; 6] = [
    "format",
    "format_version",
    "library_version",
    "config",
    "groups",
    "params",
];

/// CRC-32 of the covered values joined with '\n', which serde_json never leaves unescaped
/// inside a value.
fn header_crc<'a>(values: impl IntoIterator<Item = &'a str>) -> u32 {
    let mut text = String::new();
    for v in values {
        text.push_str(v);
        text.push('\n');
    }
    crc32(text.as_bytes())
}

impl Manifest {
    /// The metadata, keys sorted (the writer's bytes depend only on the checkpoint).
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        let c = &self.config;
        let mut config = json!({
            "lr": c.lr, "beta1": c.beta1, "beta2": c.beta2, "eps": c.eps,
            "weight_decay": c.weight_decay, "max_unorm": c.max_unorm,
            "min_8bit_size": c.min_8bit_size, "optim_bits": c.optim_bits,
            "percentile_clipping": c.percentile_clipping, "amsgrad": c.amsgrad,
            "block_wise": c.block_wise, "is_paged": c.is_paged, "skip_zeros": c.skip_zeros,
        });
        if self.format_version >= 2 {
            config["stochastic_rounding"] = c.stochastic_rounding.into();
            config["seed"] = c.seed.into();
        }
        let groups: Vec<Value> = self
            .groups
            .iter()
            .map(|(g, lr)| json!({"group": g, "lr": lr}))
            .collect();
        let params: Vec<Value> = self
            .params
            .iter()
            .map(|p| param_json(p, self.format_version))
            .collect();
        let covered: [String; 6] = [
            FORMAT.to_string(),
            self.format_version.to_string(),
            self.library_version.clone(),
            config.to_string(),
            Value::from(groups).to_string(),
            Value::from(params).to_string(),
        ];
        let crc = header_crc(covered.iter().map(String::as_str));
        let mut meta: BTreeMap<String, String> =
            COVERED.iter().map(|k| k.to_string()).zip(covered).collect();
        meta.insert("header_crc32".into(), format!("{crc:08x}"));
        meta
    }

    /// Reads and checks the metadata: magic, version, header checksum, then every field.
    pub fn from_metadata(meta: Option<&HashMap<String, String>>) -> Result<Manifest> {
        let not_ours = || corrupt("not a libadam8bit checkpoint (no `format` metadata)".into());
        let meta = meta.ok_or_else(not_ours)?;
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(not_ours());
        }
        let version: u32 = meta
            .get("format_version")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| corrupt("metadata format_version: missing or not a number".into()))?;
        if version == 0 {
            return Err(corrupt("metadata format_version 0 does not exist".into()));
        }
        if version > FORMAT_VERSION {
            return Err(Error::Mismatch(format!(
                "checkpoint format version {version} is newer than this library's ({FORMAT_VERSION}); \
                 load it with a newer libadam8bit"
            )));
        }
        let stored = meta
            .get("header_crc32")
            .ok_or_else(|| corrupt("metadata header_crc32: missing".into()))?;
        let covered = COVERED
            .iter()
            .map(|&k| {
                meta.get(k)
                    .map(String::as_str)
                    .ok_or_else(|| corrupt(format!("metadata: key `{k}` is missing")))
            })
            .collect::<Result<Vec<&str>>>()?;
        // Compared as text, exactly as written (lower-case hex), so no altered digit passes.
        let actual = format!("{:08x}", header_crc(covered.iter().copied()));
        if *stored != actual {
            return Err(corrupt(format!(
                "metadata checksum mismatch (stored {stored}, computed {actual}): the header is damaged"
            )));
        }
        if let Some(k) = meta
            .keys()
            .find(|k| !COVERED.contains(&k.as_str()) && *k != "header_crc32")
        {
            return Err(corrupt(format!("metadata: unknown key `{k}`")));
        }
        let text = |key: &str| meta.get(key).map(String::as_str).unwrap_or_default();
        let config = config_from(&parse(text("config"), "config")?, version)?;
        let groups = groups_from(&parse(text("groups"), "groups")?)?;
        let params = match parse(text("params"), "params")? {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| param_from(v, i, version))
                .collect::<Result<Vec<_>>>()?,
            _ => return Err(corrupt("metadata params: expected a JSON array".into())),
        };
        Ok(Manifest {
            format_version: version,
            library_version: text("library_version").to_string(),
            config,
            groups,
            params,
        })
    }
}

fn param_json(p: &ParamEntry, version: u32) -> Value {
    let o = &p.overrides;
    let crc: serde_json::Map<String, Value> = p
        .crc32
        .iter()
        .map(|(k, c)| (k.name().to_string(), Value::from(*c)))
        .collect();
    let mut v = json!({
        "numel": p.numel, "dtype": p.dtype.name(), "path": path_name(p.path), "step": p.step,
        "group": o.group, "lr_scale": o.lr_scale, "beta1": o.beta1, "beta2": o.beta2,
        "eps": o.eps, "weight_decay": o.weight_decay, "optim_bits": o.optim_bits,
        "min_8bit_size": o.min_8bit_size,
        "shard": o.shard.map(|s| json!({"full_numel": s.full_numel, "offset": s.offset})),
        "crc32": crc,
    });
    if version >= 2 {
        v["stochastic_rounding"] = o.stochastic_rounding.into();
        v["seed"] = o.seed.into();
        v["rounding_key"] = o.rounding_key.into();
        v["key"] = p.rounding_key.into();
    }
    v
}

fn config_from(v: &Value, version: u32) -> Result<Config> {
    let mut f = Fields::new(v, "config")?;
    let cfg = Config {
        lr: f.f64("lr")?,
        beta1: f.f64("beta1")?,
        beta2: f.f64("beta2")?,
        eps: f.f64("eps")?,
        weight_decay: f.f64("weight_decay")?,
        max_unorm: f.f64("max_unorm")?,
        min_8bit_size: f.u64("min_8bit_size")?,
        optim_bits: f.i32("optim_bits")?,
        percentile_clipping: f.i32("percentile_clipping")?,
        amsgrad: f.bool("amsgrad")?,
        block_wise: f.bool("block_wise")?,
        is_paged: f.bool("is_paged")?,
        skip_zeros: f.bool("skip_zeros")?,
        stochastic_rounding: version >= 2 && f.bool("stochastic_rounding")?,
        seed: if version >= 2 { f.u64("seed")? } else { 0 },
    };
    f.finish()?;
    cfg.validate()
        .map_err(|e| corrupt(format!("config: invalid: {e}")))?;
    Ok(cfg)
}

fn groups_from(v: &Value) -> Result<BTreeMap<u32, f64>> {
    let items = v
        .as_array()
        .ok_or_else(|| corrupt("metadata groups: expected a JSON array".into()))?;
    let mut groups = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let mut f = Fields::new(item, format!("groups[{i}]"))?;
        let (g, lr) = (f.u32("group")?, f.f64("lr")?);
        f.finish()?;
        crate::config::check_lr(lr).map_err(|e| corrupt(format!("groups[{i}].lr: {e}")))?;
        if groups.insert(g, lr).is_some() {
            return Err(corrupt(format!("groups[{i}]: group {g} appears twice")));
        }
    }
    Ok(groups)
}

fn param_from(v: &Value, i: usize, version: u32) -> Result<ParamEntry> {
    let what = format!("parameter {i}");
    let mut f = Fields::new(v, what.clone())?;
    let numel = f.u64("numel")?;
    let dtype_name = f.str("dtype")?;
    let dtype = Dtype::from_name(dtype_name)
        .ok_or_else(|| corrupt(format!("{what}.dtype: unknown dtype `{dtype_name}`")))?;
    let path_text = f.str("path")?;
    let path = path_from_name(path_text)
        .ok_or_else(|| corrupt(format!("{what}.path: unknown path `{path_text}`")))?;
    let step = f.u64("step")?;
    let overrides = ParamOverrides {
        group: f.u32("group")?,
        lr_scale: f.opt("lr_scale", Fields::f64)?,
        beta1: f.opt("beta1", Fields::f64)?,
        beta2: f.opt("beta2", Fields::f64)?,
        eps: f.opt("eps", Fields::f64)?,
        weight_decay: f.opt("weight_decay", Fields::f64)?,
        optim_bits: f.opt("optim_bits", Fields::i32)?,
        min_8bit_size: f.opt("min_8bit_size", Fields::u64)?,
        shard: f.opt("shard", |f, key| {
            let mut s = Fields::new(f.value(key)?, format!("{what}.shard"))?;
            let shard = Shard {
                full_numel: s.u64("full_numel")?,
                offset: s.u64("offset")?,
            };
            s.finish()?;
            Ok(shard)
        })?,
        stochastic_rounding: None,
        seed: None,
        rounding_key: None,
    };
    let (overrides, rounding_key) = if version >= 2 {
        let o = ParamOverrides {
            stochastic_rounding: f.opt("stochastic_rounding", Fields::bool)?,
            seed: f.opt("seed", Fields::u64)?,
            rounding_key: f.opt("rounding_key", Fields::u64)?,
            ..overrides
        };
        (o, Some(f.u64("key")?))
    } else {
        (overrides, None)
    };
    let crc_value = f.value("crc32")?;
    let crc_obj = crc_value
        .as_object()
        .ok_or_else(|| corrupt(format!("{what}.crc32: expected a JSON object")))?;
    let mut crc = Vec::with_capacity(crc_obj.len());
    for kind in StateKind::ALL {
        if let Some(c) = crc_obj.get(kind.name()) {
            let c = c
                .as_u64()
                .and_then(|c| u32::try_from(c).ok())
                .ok_or_else(|| corrupt(format!("{what}.crc32.{}: not a CRC-32", kind.name())))?;
            crc.push((kind, c));
        }
    }
    if crc.len() != crc_obj.len() {
        return Err(corrupt(format!("{what}.crc32: names an unknown array")));
    }
    f.finish()?;
    Ok(ParamEntry {
        numel,
        dtype,
        path,
        step,
        overrides,
        rounding_key,
        crc32: crc,
    })
}
