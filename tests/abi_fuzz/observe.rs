//! A handle's whole observable state through the C ABI, as bytes: its config and, per
//! parameter, its `param_info` and every state array it keeps. Two handles driven alike must
//! observe byte for byte the same, and a rejected call must leave its handle's observation as
//! it was. Observing also checks what the handle reports against the fuzzer's [`Known`].

use std::ffi::c_void;
use std::mem::size_of;

use adam8bit::ffi::bnb_adam8bit_t;
use adam8bit::ffi::handle::*;
use adam8bit::ffi::params::*;
use adam8bit::ffi::state::*;
use adam8bit::ffi::types::*;

use super::bytes::{from_bytes, struct_bytes};
use super::model::Known;
use crate::common::message;

#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub config: Vec<u8>,
    pub params: Vec<Observed>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub info: Vec<u8>,
    pub arrays: Vec<(bnb_state_kind_t, Vec<u8>)>,
}

impl Observed {
    pub fn array(&self, kind: bnb_state_kind_t) -> &[u8] {
        &self
            .arrays
            .iter()
            .find(|a| a.0 == kind)
            .expect("a kept array")
            .1
    }
}

fn checked(what: &str, status: bnb_status_t) -> Result<(), String> {
    match status {
        BNB_OK => Ok(()),
        s => Err(format!("{what} returned {s}: {}", message())),
    }
}

/// Everything `h` shows, checked against `known`: the config, the parameter count and each
/// parameter's registration, step, learning rate and state sizes.
pub fn observe(h: *mut bnb_adam8bit_t, known: &Known) -> Result<Observation, String> {
    let mut config = vec![0u8; size_of::<bnb_adam8bit_config_t>()];
    // SAFETY (every call): `h` is live, the outputs hold what each call writes.
    checked("get_config", unsafe {
        bnb_adam8bit_get_config(h, config.as_mut_ptr().cast(), config.len())
    })?;
    let mut want = known.cfg;
    want.struct_size = config.len() as u64;
    if config != struct_bytes(&want) {
        return Err(format!("get_config wrote {config:?}, expected {want:?}"));
    }
    let mut n = 0u32;
    checked("num_params", unsafe { bnb_adam8bit_num_params(h, &mut n) })?;
    if n as usize != known.params.len() {
        return Err(format!("{n} parameters, expected {}", known.params.len()));
    }
    let mut params = Vec::with_capacity(n as usize);
    for (id, p) in known.params.iter().enumerate() {
        let mut info = vec![0u8; size_of::<bnb_param_info_t>()];
        checked("param_info", unsafe {
            bnb_adam8bit_param_info(h, id as u32, info.as_mut_ptr().cast(), info.len())
        })?;
        for (offset, field) in [
            (std::mem::offset_of!(bnb_param_info_t, paged), "paged"),
            (
                std::mem::offset_of!(bnb_param_info_t, stochastic_rounding),
                "stochastic_rounding",
            ),
        ] {
            if info[offset] > 1 {
                return Err(format!(
                    "param_info({id}) wrote a {field} byte other than 0 or 1: {info:?}"
                ));
            }
        }
        let i: bnb_param_info_t = from_bytes(&info);
        let blocks = if p.path == BNB_PATH_BLOCKWISE8 {
            p.numel.div_ceil(256)
        } else {
            0
        };
        let expected = (
            info.len() as u64,
            p.numel,
            p.dtype,
            p.path,
            p.step,
            blocks,
            known.state_bytes(id),
            known.lr(id).to_bits(),
            p.options.group,
            false,
            false,
            [0u8; 6],
        );
        let got = (
            i.struct_size,
            i.numel,
            i.dtype,
            i.path,
            i.step,
            i.blocks,
            i.state_bytes,
            i.lr.to_bits(),
            i.group,
            i.paged,
            i.stochastic_rounding,
            i.reserved,
        );
        if got != expected {
            return Err(format!(
                "param_info({id}) is {i:?}; expected (struct_size, numel, dtype, path, step, \
                 blocks, state_bytes, lr bits, group, paged, stochastic_rounding, reserved) = \
                 {expected:?}"
            ));
        }
        let mut arrays = Vec::new();
        for (kind, size) in known.kinds(id) {
            let mut bytes = 0u64;
            checked("state_size", unsafe {
                bnb_adam8bit_state_size(h, id as u32, kind, &mut bytes)
            })?;
            if bytes != size {
                return Err(format!(
                    "state_size({id}, {kind}) is {bytes}, expected {size}"
                ));
            }
            let mut v = vec![0u8; size as usize];
            checked("read_state", unsafe {
                bnb_adam8bit_read_state(h, id as u32, kind, v.as_mut_ptr().cast::<c_void>(), size)
            })?;
            arrays.push((kind, v));
        }
        params.push(Observed { info, arrays });
    }
    Ok(Observation { config, params })
}
