//! Per-parameter optimizer state in host memory, and the byte-level view of it that the state
//! accessors and checkpoints use.

use crate::config::{Path, BLOCKSIZE, HISTORY};
use crate::error::{invalid, try_vec, Error, Result};
use crate::qmap::{SIGNED_BITS, UNSIGNED_BITS};

/// The state arrays a caller can read or write, by the names bitsandbytes' `state_dict` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    State1,
    State2,
    Absmax1,
    Absmax2,
    Qmap1,
    Qmap2,
    Max1,
    Max2,
    GnormVec,
    UnormVec,
}

impl StateKind {
    pub const ALL: [StateKind; 10] = [
        StateKind::State1,
        StateKind::State2,
        StateKind::Absmax1,
        StateKind::Absmax2,
        StateKind::Qmap1,
        StateKind::Qmap2,
        StateKind::Max1,
        StateKind::Max2,
        StateKind::GnormVec,
        StateKind::UnormVec,
    ];

    /// bitsandbytes' key for this array.
    pub fn name(self) -> &'static str {
        match self {
            StateKind::State1 => "state1",
            StateKind::State2 => "state2",
            StateKind::Absmax1 => "absmax1",
            StateKind::Absmax2 => "absmax2",
            StateKind::Qmap1 => "qmap1",
            StateKind::Qmap2 => "qmap2",
            StateKind::Max1 => "max1",
            StateKind::Max2 => "max2",
            StateKind::GnormVec => "gnorm_vec",
            StateKind::UnormVec => "unorm_vec",
        }
    }

    pub fn from_name(name: &str) -> Option<StateKind> {
        StateKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Arrays that hold magnitudes (block and tensor maxima of |m| and |v|, squared gradient norms,
/// an update norm): no step ever makes one negative. NaN and infinities can arise (an
/// overflowing `g * g`) and are kept, so a diverged run still saves and loads as it was.
/// Returns the first negative element's index and value.
pub fn negative_magnitude(kind: StateKind, bytes: &[u8]) -> Option<(usize, f32)> {
    use StateKind::*;
    if !matches!(kind, Absmax1 | Absmax2 | Max1 | Max2 | GnormVec | UnormVec) {
        return None;
    }
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .enumerate()
        .find(|&(_, x)| x < 0.0)
}

/// The two moments, in the layout of the parameter's path.
#[derive(Debug, Clone, PartialEq)]
pub enum Moments {
    /// Codes plus one absmax per 256-element block and state (rules 1-8).
    Blockwise8 {
        state1: Vec<u8>,
        state2: Vec<u8>,
        absmax1: Vec<f32>,
        absmax2: Vec<f32>,
    },
    /// Codes plus one scale per state for the whole tensor (rule 10).
    Dynamic8 {
        state1: Vec<u8>,
        state2: Vec<u8>,
        max1: f32,
        max2: f32,
    },
    /// Plain fp32 moments (rule 9).
    Fp32 { state1: Vec<f32>, state2: Vec<f32> },
}

/// Everything a parameter carries from step to step besides its step counter.
#[derive(Debug, Clone, PartialEq)]
pub struct HostState {
    pub moments: Moments,
    /// Percentile clipping's 100-slot history of squared gradient norms (rule 11).
    pub gnorm_vec: Option<Vec<f32>>,
    /// The squared update norm of the last step (rules 9, 10, `max_unorm > 0`).
    pub unorm_vec: Option<f32>,
}

/// Bytes of the element type of `kind`'s array and its element count, for a parameter of
/// `numel` elements on `path`; `None` when that path does not keep such an array.
pub fn layout(
    path: Path,
    numel: u64,
    kind: StateKind,
    clips: bool,
    unorm: bool,
) -> Option<(u64, u64)> {
    let blocks = numel.div_ceil(BLOCKSIZE);
    let eight_bit = path != Path::Fp32;
    match kind {
        StateKind::State1 | StateKind::State2 => Some((if eight_bit { 1 } else { 4 }, numel)),
        StateKind::Absmax1 | StateKind::Absmax2 => {
            (path == Path::Blockwise8).then_some((4, blocks))
        }
        StateKind::Qmap1 | StateKind::Qmap2 => eight_bit.then_some((4, 256)),
        StateKind::Max1 | StateKind::Max2 => (path == Path::Dynamic8).then_some((4, 1)),
        StateKind::GnormVec => clips.then_some((4, HISTORY as u64)),
        StateKind::UnormVec => (unorm && path != Path::Blockwise8).then_some((4, 1)),
    }
}

/// Bytes a parameter's state occupies (what `param_info` reports).
pub fn state_bytes(path: Path, numel: u64, clips: bool, unorm: bool) -> u64 {
    StateKind::ALL
        .into_iter()
        .filter(|k| !matches!(k, StateKind::Qmap1 | StateKind::Qmap2)) // shared, not per parameter
        .filter_map(|k| layout(path, numel, k, clips, unorm))
        .map(|(size, count)| size * count)
        .sum()
}

impl HostState {
    /// Zeroed state, as bitsandbytes starts it: codes 0, absmax 0, history 0.
    pub fn new(path: Path, numel: u64, clips: bool, unorm: bool) -> Result<HostState> {
        let n = usize::try_from(numel).map_err(|_| {
            Error::OutOfMemory(format!(
                "{numel} elements do not fit this machine's address space"
            ))
        })?;
        let blocks = n.div_ceil(BLOCKSIZE as usize);
        let moments = match path {
            Path::Blockwise8 => Moments::Blockwise8 {
                state1: try_vec(n, 0u8, "state1")?,
                state2: try_vec(n, 0u8, "state2")?,
                absmax1: try_vec(blocks, 0f32, "absmax1")?,
                absmax2: try_vec(blocks, 0f32, "absmax2")?,
            },
            Path::Dynamic8 => Moments::Dynamic8 {
                state1: try_vec(n, 0u8, "state1")?,
                state2: try_vec(n, 0u8, "state2")?,
                max1: 0.0,
                max2: 0.0,
            },
            Path::Fp32 => Moments::Fp32 {
                state1: try_vec(n, 0f32, "state1")?,
                state2: try_vec(n, 0f32, "state2")?,
            },
        };
        Ok(HostState {
            moments,
            gnorm_vec: clips
                .then(|| try_vec(HISTORY, 0f32, "gnorm_vec"))
                .transpose()?,
            unorm_vec: (unorm && path != Path::Blockwise8).then_some(0.0),
        })
    }

    /// Array `kind` as its little-endian bytes.
    pub fn bytes(&self, kind: StateKind) -> Result<&[u8]> {
        Ok(match (kind, &self.moments) {
            (StateKind::Qmap1, Moments::Blockwise8 { .. } | Moments::Dynamic8 { .. }) => {
                as_bytes(&SIGNED_BITS)
            }
            (StateKind::Qmap2, Moments::Blockwise8 { .. } | Moments::Dynamic8 { .. }) => {
                as_bytes(&UNSIGNED_BITS)
            }
            (StateKind::GnormVec, _) => {
                as_bytes(self.gnorm_vec.as_deref().ok_or_else(|| absent(kind))?)
            }
            (StateKind::UnormVec, _) => as_bytes(std::slice::from_ref(
                self.unorm_vec.as_ref().ok_or_else(|| absent(kind))?,
            )),
            (_, moments) => moments_bytes(moments, kind).ok_or_else(|| absent(kind))?,
        })
    }

    /// Copies array `kind` into `dst`, whose length the caller has checked against [`layout`].
    pub fn read(&self, kind: StateKind, dst: &mut [u8]) -> Result<()> {
        let src = self.bytes(kind)?;
        if src.len() != dst.len() {
            invalid!(
                "{} holds {} bytes, the buffer {}",
                kind.name(),
                src.len(),
                dst.len()
            );
        }
        dst.copy_from_slice(src);
        Ok(())
    }

    /// Overwrites array `kind` with `src` (length checked against [`layout`] by the caller).
    /// Maps are fixed: writing one succeeds only with the library's own table.
    pub fn write(&mut self, kind: StateKind, src: &[u8]) -> Result<()> {
        if matches!(kind, StateKind::Qmap1 | StateKind::Qmap2) {
            if self.bytes(kind)? != src {
                return Err(Error::Mismatch(format!(
                    "{} differs from the library's map (bnb-reference.md Appendix A); codes encoded with \
                     another map cannot be stepped with this one",
                    kind.name()
                )));
            }
            return Ok(());
        }
        let dst: &mut [u8] = match kind {
            StateKind::GnormVec => {
                as_bytes_mut(self.gnorm_vec.as_deref_mut().ok_or_else(|| absent(kind))?)
            }
            StateKind::UnormVec => as_bytes_mut(std::slice::from_mut(
                self.unorm_vec.as_mut().ok_or_else(|| absent(kind))?,
            )),
            _ => moments_bytes_mut(&mut self.moments, kind).ok_or_else(|| absent(kind))?,
        };
        if src.len() != dst.len() {
            invalid!(
                "{} holds {} bytes, the buffer {}",
                kind.name(),
                dst.len(),
                src.len()
            );
        }
        dst.copy_from_slice(src);
        Ok(())
    }
}

fn absent(kind: StateKind) -> Error {
    Error::InvalidArgument(format!("this parameter's path keeps no {}", kind.name()))
}

fn moments_bytes(m: &Moments, kind: StateKind) -> Option<&[u8]> {
    Some(match (m, kind) {
        (
            Moments::Blockwise8 { state1, .. } | Moments::Dynamic8 { state1, .. },
            StateKind::State1,
        ) => state1,
        (
            Moments::Blockwise8 { state2, .. } | Moments::Dynamic8 { state2, .. },
            StateKind::State2,
        ) => state2,
        (Moments::Blockwise8 { absmax1, .. }, StateKind::Absmax1) => as_bytes(absmax1),
        (Moments::Blockwise8 { absmax2, .. }, StateKind::Absmax2) => as_bytes(absmax2),
        (Moments::Dynamic8 { max1, .. }, StateKind::Max1) => as_bytes(std::slice::from_ref(max1)),
        (Moments::Dynamic8 { max2, .. }, StateKind::Max2) => as_bytes(std::slice::from_ref(max2)),
        (Moments::Fp32 { state1, .. }, StateKind::State1) => as_bytes(state1),
        (Moments::Fp32 { state2, .. }, StateKind::State2) => as_bytes(state2),
        _ => return None,
    })
}

fn moments_bytes_mut(m: &mut Moments, kind: StateKind) -> Option<&mut [u8]> {
    Some(match (m, kind) {
        (
            Moments::Blockwise8 { state1, .. } | Moments::Dynamic8 { state1, .. },
            StateKind::State1,
        ) => state1,
        (
            Moments::Blockwise8 { state2, .. } | Moments::Dynamic8 { state2, .. },
            StateKind::State2,
        ) => state2,
        (Moments::Blockwise8 { absmax1, .. }, StateKind::Absmax1) => as_bytes_mut(absmax1),
        (Moments::Blockwise8 { absmax2, .. }, StateKind::Absmax2) => as_bytes_mut(absmax2),
        (Moments::Dynamic8 { max1, .. }, StateKind::Max1) => {
            as_bytes_mut(std::slice::from_mut(max1))
        }
        (Moments::Dynamic8 { max2, .. }, StateKind::Max2) => {
            as_bytes_mut(std::slice::from_mut(max2))
        }
        (Moments::Fp32 { state1, .. }, StateKind::State1) => as_bytes_mut(state1),
        (Moments::Fp32 { state2, .. }, StateKind::State2) => as_bytes_mut(state2),
        _ => return None,
    })
}

/// Plain-old-data element types whose bytes can be viewed directly (little-endian hosts only,
/// which is every platform this library builds for; see the `compile_error!` in lib.rs).
pub trait Pod: Copy {}
impl Pod for f32 {}
impl Pod for f64 {}
impl Pod for u32 {}
impl Pod for u64 {}
impl Pod for u8 {}

pub fn as_bytes<T: Pod>(s: &[T]) -> &[u8] {
    // SAFETY: T is plain old data without padding; the byte view covers exactly the slice.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast(), std::mem::size_of_val(s)) }
}

pub fn as_bytes_mut<T: Pod>(s: &mut [T]) -> &mut [u8] {
    // SAFETY: as above; every byte pattern is a valid T for the Pod types (f32, u32, u8).
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast(), std::mem::size_of_val(s)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes beyond 2^31 and 2^32 elements are plain 64-bit arithmetic (bitsandbytes' int32
    /// count wraps there); checked without allocating.
    #[test]
    fn state_sizes_of_huge_tensors() {
        let n: u64 = 3 * (1 << 31) + 5;
        let blocks = n.div_ceil(256);
        assert_eq!(
            layout(Path::Blockwise8, n, StateKind::State1, false, false),
            Some((1, n))
        );
        assert_eq!(
            layout(Path::Blockwise8, n, StateKind::Absmax2, false, false),
            Some((4, blocks))
        );
        assert_eq!(
            state_bytes(Path::Blockwise8, n, false, false),
            2 * n + 8 * blocks
        );
        assert_eq!(state_bytes(Path::Fp32, n, true, true), 8 * n + 400 + 4);
        assert_eq!(
            state_bytes(Path::Dynamic8, 1 << 40, false, false),
            (2 << 40) + 8
        );
        // 2.03125 bytes per element on the default path
        assert_eq!(
            state_bytes(Path::Blockwise8, 1 << 36, false, false) as f64 / (1u64 << 36) as f64,
            2.03125
        );
    }
}
