//! One parameter's optimizer state in device memory: the moments (managed memory when paged),
//! the blockwise absmax, the reduction partials and the per-parameter device scalars ([`Aux`]).
//! Everything is allocated at registration; a step allocates nothing.

use super::abi::Aux;
use super::driver::{Context, DevBuf};
use crate::config::{Path, BLOCKSIZE, PAGED_MIN_NUMEL};
use crate::error::{Error, Result};
use crate::qmap::{SIGNED_BITS, UNSIGNED_BITS};
use crate::state::{as_bytes, StateKind};

pub struct DeviceState {
    pub path: Path,
    pub numel: u64,
    pub s1: DevBuf,
    pub s2: DevBuf,
    pub absmax: Option<(DevBuf, DevBuf)>,
    /// Two f64 per block and per finalize chunk, for the sums that feed a scale (percentile
    /// clipping, max_unorm).
    pub partial: Option<DevBuf>,
    pub aux: DevBuf,
    pub paged: bool,
    clips: bool,
    unorm: bool,
}

impl DeviceState {
    pub fn new(
        ctx: &Context,
        path: Path,
        numel: u64,
        clips: bool,
        unorm: bool,
        is_paged: bool,
    ) -> Result<DeviceState> {
        let too_big = || Error::OutOfMemory(format!("{numel} elements exceed the address space"));
        let n = usize::try_from(numel).map_err(|_| too_big())?;
        let blocks = n.div_ceil(BLOCKSIZE as usize);
        let elem = if path == Path::Fp32 { 4 } else { 1 };
        let bytes = n.checked_mul(elem).ok_or_else(too_big)?;
        let paged = is_paged && numel >= PAGED_MIN_NUMEL;
        let s1 = DevBuf::zeroed(ctx, bytes, paged)?;
        let s2 = DevBuf::zeroed(ctx, bytes, paged)?;
        let absmax = match path {
            Path::Blockwise8 => Some((
                DevBuf::zeroed(ctx, blocks * 4, false)?,
                DevBuf::zeroed(ctx, blocks * 4, false)?,
            )),
            _ => None,
        };
        let reduces = clips || (unorm && path != Path::Blockwise8);
        // Two f64 per block, then two per finalize chunk (csrc/adam8bit.cu, a8_chunk).
        let partial = if reduces {
            let chunks = super::abi::chunks(numel) as usize;
            Some(DevBuf::zeroed(ctx, (blocks + chunks) * 16, false)?)
        } else {
            None
        };
        let aux = DevBuf::zeroed(ctx, std::mem::size_of::<Aux>(), false)?;
        aux.upload(aux_bytes(&Aux::initial()))?;
        Ok(DeviceState {
            path,
            numel,
            s1,
            s2,
            absmax,
            partial,
            aux,
            paged,
            clips,
            unorm: unorm && path != Path::Blockwise8,
        })
    }

    /// The per-parameter device scalars (synchronous copy; the caller synchronised the context).
    pub fn read_aux(&self) -> Result<Aux> {
        let mut a = Aux::initial();
        // SAFETY: Aux is plain old data; every byte pattern the kernels write is valid.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                (&mut a as *mut Aux).cast::<u8>(),
                std::mem::size_of::<Aux>(),
            )
        };
        self.aux.download(bytes)?;
        Ok(a)
    }

    /// Sets the step counter the next call reads, after `calls` step calls (synchronous
    /// copies).
    pub fn set_step(&self, calls: u64, step: u64) -> Result<()> {
        let mut a = self.read_aux()?;
        a.set_step(calls, step);
        self.aux.overwrite(aux_bytes(&a))
    }

    /// Copies array `kind` into `dst` (length checked by the optimizer against the layout).
    pub fn read(&self, kind: StateKind, dst: &mut [u8]) -> Result<()> {
        match kind {
            StateKind::Qmap1 => dst.copy_from_slice(as_bytes(&SIGNED_BITS)),
            StateKind::Qmap2 => dst.copy_from_slice(as_bytes(&UNSIGNED_BITS)),
            StateKind::Max1 | StateKind::Max2 | StateKind::GnormVec | StateKind::UnormVec => {
                let mut a = self.read_aux()?;
                dst.copy_from_slice(aux_field(&mut a, kind, self)?);
            }
            _ => self.buffer(kind)?.download(dst)?,
        }
        Ok(())
    }

    /// Overwrites array `kind` with `src`; maps only with the library's own tables.
    pub fn write(&self, kind: StateKind, src: &[u8]) -> Result<()> {
        match kind {
            StateKind::Qmap1 | StateKind::Qmap2 => {
                let ours = if kind == StateKind::Qmap1 {
                    as_bytes(&SIGNED_BITS)
                } else {
                    as_bytes(&UNSIGNED_BITS)
                };
                if ours != src {
                    return Err(Error::Mismatch(format!(
                        "{} differs from the library's map (bnb-reference.md Appendix A)",
                        kind.name()
                    )));
                }
            }
            StateKind::Max1 | StateKind::Max2 | StateKind::GnormVec | StateKind::UnormVec => {
                let mut a = self.read_aux()?;
                aux_field(&mut a, kind, self)?.copy_from_slice(src);
                self.aux.overwrite(aux_bytes(&a))?;
            }
            _ => self.buffer(kind)?.overwrite(src)?,
        }
        Ok(())
    }

    fn buffer(&self, kind: StateKind) -> Result<&DevBuf> {
        match (kind, &self.absmax) {
            (StateKind::State1, _) => Ok(&self.s1),
            (StateKind::State2, _) => Ok(&self.s2),
            (StateKind::Absmax1, Some((a1, _))) => Ok(a1),
            (StateKind::Absmax2, Some((_, a2))) => Ok(a2),
            _ => Err(absent(kind)),
        }
    }
}

fn absent(kind: StateKind) -> Error {
    Error::InvalidArgument(format!("this parameter's path keeps no {}", kind.name()))
}

fn aux_bytes(a: &Aux) -> &[u8] {
    // SAFETY: Aux is #[repr(C)] plain old data.
    unsafe {
        std::slice::from_raw_parts((a as *const Aux).cast::<u8>(), std::mem::size_of::<Aux>())
    }
}

/// The bytes of the scalar state `kind` inside the device scalars.
fn aux_field<'a>(a: &'a mut Aux, kind: StateKind, s: &DeviceState) -> Result<&'a mut [u8]> {
    let dynamic = s.path == Path::Dynamic8;
    let field: &mut [f32] = match kind {
        StateKind::Max1 if dynamic => std::slice::from_mut(&mut a.max1),
        StateKind::Max2 if dynamic => std::slice::from_mut(&mut a.max2),
        StateKind::GnormVec if s.clips => &mut a.history,
        StateKind::UnormVec if s.unorm => std::slice::from_mut(&mut a.unorm_vec),
        _ => return Err(absent(kind)),
    };
    Ok(crate::state::as_bytes_mut(field))
}
