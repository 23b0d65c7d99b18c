//! bitsandbytes' own traces (`shared/oracle`, bitsandbytes 0.50.2 on its CPU backend), one
//! step at a time from the trace's previous state, within the bounds of the oracle README.
//! bitsandbytes' CPU backend is not the function DECISIONS.md defines (weight decay before the
//! update, a 65,536-entry lookup quantizer, FMAs), so these are bounds, never bit equality.

mod common;
use common::*;

use adam8bit::ffi::types::*;
use adam8bit::qmap::{SIGNED, UNSIGNED};

/// Spacing of f32 at the value with these bits.
fn ulp_at(bits: &[u8]) -> f64 {
    let x = f32::from_le_bytes(bits.try_into().unwrap()).abs();
    (f32::from_bits(x.to_bits() + 1) - x) as f64
}

/// Value of a stored parameter element (fp32, or fp16/bf16 by `bf16`).
fn value(bits: &[u8], bf16: bool) -> f64 {
    match bits.len() {
        4 => f32::from_le_bytes(bits.try_into().unwrap()) as f64,
        _ => {
            let b = u16::from_le_bytes(bits.try_into().unwrap());
            if bf16 {
                half::bf16::from_bits(b).to_f64()
            } else {
                half::f16::from_bits(b).to_f64()
            }
        }
    }
}

fn f32_ulps(a: f32, b: f32) -> u32 {
    let ord = |x: f32| {
        let i = x.to_bits() as i64;
        if i >= 1 << 31 {
            (1i64 << 31) - i
        } else {
            i
        }
    };
    (ord(a) - ord(b)).unsigned_abs() as u32
}

struct Bounds {
    max_param_excess: f64,
    worst_state1_fraction: f64,
    worst_state2_fraction: f64,
}

fn check_case(case: &Case) -> Bounds {
    let cfg = case.config();
    let (lr, wd) = (cfg.lr, cfg.weight_decay);
    let h = Handle::new(&cfg);
    let id = h.add(case.n(), case.dtype());
    let bf16 = case.dtype() == BNB_DTYPE_BF16;
    let es = case.elem_size();
    let grads = case.arr("grads").unwrap();
    let params = case.arr("params").unwrap();
    let init = case.arr("param_init").unwrap();
    let files: Vec<(&str, bnb_state_kind_t)> = vec![
        ("state1", BNB_STATE1),
        ("state2", BNB_STATE2),
        ("absmax1", BNB_ABSMAX1),
        ("absmax2", BNB_ABSMAX2),
    ];
    let arrays: Vec<Option<Npy>> = files.iter().map(|(f, _)| case.arr(f)).collect();
    let eight_bit = h.info(id).path == BNB_PATH_BLOCKWISE8;
    let mut b = Bounds {
        max_param_excess: 0.0,
        worst_state1_fraction: 0.0,
        worst_state2_fraction: 0.0,
    };
    for t in 1..=case.steps() {
        // Teacher forcing: the trace's state after step t-1 (zeros before step 1).
        if t > 1 {
            for ((_, kind), a) in files.iter().zip(&arrays) {
                if let Some(a) = a {
                    h.write(id, *kind, a.row(t - 2));
                }
            }
        }
        h.set_step(id, (t - 1) as u64);
        let mut p = if t == 1 {
            init.data.clone()
        } else {
            params.row(t - 2).to_vec()
        };
        h.step(id, &mut p, grads.row(t - 1));

        // Parameters: |dp| <= 1 ulp of the dtype at the trace's value + lr*(4e-5 + 10*lr*wd).
        let slack = lr * (4e-5 + 10.0 * lr * wd);
        for (ours, theirs) in p.chunks(es).zip(params.row(t - 1).chunks(es)) {
            let dp = (value(ours, bf16) - value(theirs, bf16)).abs();
            let unit = if es == 4 {
                ulp_at(theirs)
            } else {
                spacing16(theirs, bf16)
            };
            let excess = dp / (unit + slack);
            assert!(
                excess <= 1.0,
                "{} step {t}: |dp| = {dp:e} > {unit:e} + {slack:e}",
                case.name
            );
            b.max_param_excess = b.max_param_excess.max(excess);
        }

        let s1 = h.read(id, BNB_STATE1);
        let s2 = h.read(id, BNB_STATE2);
        let want1 = arrays[0].as_ref().unwrap().row(t - 1);
        let want2 = arrays[1].as_ref().unwrap().row(t - 1);
        if eight_bit {
            let a1 = f32s(&h.read(id, BNB_ABSMAX1));
            let a2 = f32s(&h.read(id, BNB_ABSMAX2));
            let w1 = f32s(arrays[2].as_ref().unwrap().row(t - 1));
            let w2 = f32s(arrays[3].as_ref().unwrap().row(t - 1));
            for (x, y) in a1.iter().zip(&w1).chain(a2.iter().zip(&w2)) {
                assert!(
                    f32_ulps(*x, *y) <= 2,
                    "{} step {t}: absmax {x:e} vs {y:e}",
                    case.name
                );
            }
            let frac1 = code_differences(&s1, want1, &a1, &w1, &SIGNED.values, case, t);
            let frac2 = code_differences(&s2, want2, &a2, &w2, &UNSIGNED.values, case, t);
            assert!(
                frac1 <= 0.03,
                "{} step {t}: {:.2}% of state1 codes differ",
                case.name,
                frac1 * 100.0
            );
            assert!(
                frac2 <= 0.12,
                "{} step {t}: {:.2}% of state2 codes differ",
                case.name,
                frac2 * 100.0
            );
            b.worst_state1_fraction = b.worst_state1_fraction.max(frac1);
            b.worst_state2_fraction = b.worst_state2_fraction.max(frac2);
        } else {
            for (ours, theirs) in [(f32s(&s1), f32s(want1)), (f32s(&s2), f32s(want2))] {
                let scale = theirs.iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
                for (x, y) in ours.iter().zip(&theirs) {
                    let bound = 2.0 * ulp_at(&y.to_le_bytes()) + 1e-6 * scale;
                    assert!(
                        ((x - y) as f64).abs() <= bound,
                        "{} step {t}: state {x:e} vs {y:e}",
                        case.name
                    );
                }
            }
        }
    }
    b
}

/// Spacing of fp16 or bf16 at a stored value.
fn spacing16(bits: &[u8], bf16: bool) -> f64 {
    let b = u16::from_le_bytes(bits.try_into().unwrap()) & 0x7FFF;
    let v = |x: u16| {
        if bf16 {
            half::bf16::from_bits(x).to_f64()
        } else {
            half::f16::from_bits(x).to_f64()
        }
    };
    v(b + 1) - v(b)
}

/// Fraction of differing codes; each difference must be one code apart, or both codes' map
/// values within 6.2e-5 (twice bnb's LUT resolution). Blocks whose absmax is 0 on both sides
/// decode to 0 whatever their codes (we store 255 for m, bnb 0), so they count as equal.
fn code_differences(
    ours: &[u8],
    theirs: &[u8],
    a_ours: &[f32],
    a_theirs: &[f32],
    map: &[f32; 256],
    case: &Case,
    t: usize,
) -> f64 {
    let mut differ = 0usize;
    for (i, (&x, &y)) in ours.iter().zip(theirs).enumerate() {
        let blk = i / 256;
        if x == y || (a_ours[blk] == 0.0 && a_theirs[blk] == 0.0) {
            continue;
        }
        differ += 1;
        let close =
            (x as i32 - y as i32).abs() <= 1 || (map[x as usize] - map[y as usize]).abs() <= 6.2e-5;
        assert!(
            close,
            "{} step {t}: element {i}: code {x} vs bnb's {y}",
            case.name
        );
    }
    differ as f64 / ours.len() as f64
}

#[test]
fn bitsandbytes_traces_one_step_at_a_time() {
    let cases = Case::all("oracle");
    assert_eq!(cases.len(), 13);
    for case in &cases {
        let b = check_case(case);
        eprintln!(
            "{:<28} max |dp| / bound {:.3}   worst step: state1 {:.2}% state2 {:.2}% codes differ",
            case.name,
            b.max_param_excess,
            b.worst_state1_fraction * 100.0,
            b.worst_state2_fraction * 100.0
        );
    }
}
