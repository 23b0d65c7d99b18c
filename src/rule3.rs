//! DECISIONS rule 3 as a comparison of two results of the same step (for the tests and the
//! GPU check; not part of the C ABI).
//!
//! Element-wise results must be bit-identical. What passes through a reduction into a scale
//! (percentile clipping's gradient norm, `max_unorm`'s update norm) may differ: the scale by
//! 2 ulp, and what follows from it by at most 2 ulp on parameters and absmax and by one code
//! on at most 0.1% of elements. The squared norms themselves (`gnorm_vec`, `unorm_vec`) are
//! f64 sums rounded to f32; two summation orders keep them within 4 f32 epsilons (relative).

/// What an array holds, which decides how two of them may differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Parameters or fp32 moments: floats of `width` bytes (4, or 2 for fp16/bf16).
    Floats { width: usize },
    /// 8-bit codes.
    Codes,
    /// Squared norms: f32 sums of squares.
    SquaredNorms,
}

/// Distance in units in the last place between two floats of `a.len()` bytes (2 or 4), by
/// their bit patterns in total order; identical patterns are 0 apart.
pub fn ulps(a: &[u8], b: &[u8]) -> u64 {
    let (x, y, sign) = match a.len() {
        4 => (
            u32::from_le_bytes(a.try_into().expect("4 bytes")) as i64,
            u32::from_le_bytes(b.try_into().expect("4 bytes")) as i64,
            1i64 << 31,
        ),
        2 => (
            u16::from_le_bytes(a.try_into().expect("2 bytes")) as i64,
            u16::from_le_bytes(b.try_into().expect("2 bytes")) as i64,
            1i64 << 15,
        ),
        n => panic!("ulps of a {n}-byte float"),
    };
    let ordered = |v: i64| if v >= sign { sign - v } else { v };
    (ordered(x) - ordered(y)).unsigned_abs()
}

/// Compares `got` with `want`: bit for bit, or, when `bounded` (the result passed through a
/// reduction into a scale), within rule 3's bounds. The error says where and by how much.
pub fn check(field: Field, got: &[u8], want: &[u8], bounded: bool) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} bytes, expected {}", got.len(), want.len()));
    }
    if !bounded || got == want {
        return match got.iter().zip(want).position(|(a, b)| a != b) {
            None => Ok(()),
            Some(i) => Err(format!(
                "differs first at byte {i} ({} bytes of {} differ)",
                got.iter().zip(want).filter(|(a, b)| a != b).count(),
                got.len()
            )),
        };
    }
    match field {
        Field::Floats { width } => {
            let (i, worst) = got
                .chunks(width)
                .zip(want.chunks(width))
                .map(|(a, b)| ulps(a, b))
                .enumerate()
                .max_by_key(|&(_, u)| u)
                .unwrap_or((0, 0));
            if worst <= 2 {
                Ok(())
            } else {
                Err(format!("element {i} is {worst} ulp away (at most 2)"))
            }
        }
        Field::Codes => {
            let differ = got.iter().zip(want).filter(|(a, b)| a != b).count();
            let far = got
                .iter()
                .zip(want)
                .position(|(&a, &b)| (a as i32 - b as i32).abs() > 1);
            if let Some(i) = far {
                return Err(format!("code {i} is {} against {}", got[i], want[i]));
            }
            if differ * 1000 > got.len() {
                return Err(format!(
                    "{differ} of {} codes differ (at most 0.1%)",
                    got.len()
                ));
            }
            Ok(())
        }
        Field::SquaredNorms => {
            let f = |b: &[u8]| f32::from_le_bytes(b.try_into().expect("4 bytes"));
            for (i, (a, b)) in got.chunks(4).zip(want.chunks(4)).enumerate() {
                let (x, y) = (f(a), f(b));
                let close = (x - y).abs() <= 4.0 * f32::EPSILON * y.abs();
                if !close && a != b {
                    return Err(format!("squared norm {i} is {x}, expected {y}"));
                }
            }
            Ok(())
        }
    }
}
