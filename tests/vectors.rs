//! The golden vectors of `shared/vectors` (made by the executable reference of DECISIONS.md),
//! through the C ABI: bit for bit, free-running over every step and teacher-forced one step at
//! a time (DECISIONS rule 3). Only the cases whose results pass through a tensor-wide f64 norm
//! (percentile clipping, max_unorm) get rule 3's reduction bounds, and those are compared
//! teacher-forced, as the reference's README prescribes.

mod common;
use common::*;

use adam8bit::ffi::types::*;

/// Every per-step array a case may hold, with the state kind it maps to.
const STATE_FILES: [(&str, bnb_state_kind_t); 7] = [
    ("state1", BNB_STATE1),
    ("state2", BNB_STATE2),
    ("absmax1", BNB_ABSMAX1),
    ("absmax2", BNB_ABSMAX2),
    ("max1", BNB_MAX1),
    ("max2", BNB_MAX2),
    ("gnorm_vec", BNB_GNORM_VEC),
];

fn needs_reduction_bounds(c: &Case) -> bool {
    c.json["percentile_clipping"].as_i64().unwrap_or(100) < 100
        || c.json["max_unorm"].as_f64().unwrap_or(0.0) > 0.0
}

/// Distance in units in the last place between two floats of `width` bytes (2 or 4), by their
/// bit patterns; equal NaNs are 0 apart.
fn ulps(a: &[u8], b: &[u8]) -> u64 {
    let (x, y, sign) = if a.len() == 4 {
        (
            u32::from_le_bytes(a.try_into().unwrap()) as i64,
            u32::from_le_bytes(b.try_into().unwrap()) as i64,
            1i64 << 31,
        )
    } else {
        (
            u16::from_le_bytes(a.try_into().unwrap()) as i64,
            u16::from_le_bytes(b.try_into().unwrap()) as i64,
            1i64 << 15,
        )
    };
    let ordered = |v: i64| if v >= sign { sign - v } else { v };
    (ordered(x) - ordered(y)).unsigned_abs()
}

struct Run<'a> {
    case: &'a Case,
    h: Handle,
    id: u32,
    param: Vec<u8>,
}

impl<'a> Run<'a> {
    fn new(case: &'a Case) -> Run<'a> {
        let h = Handle::new(&case.config());
        let id = h.add(case.n(), case.dtype());
        let param = case.arr("param_init").unwrap().data;
        Run { case, h, id, param }
    }

    /// Loads the case's state after step `t` (1-based; 0 = the zero state) into the handle.
    fn teacher_force(&mut self, t: usize) {
        if t == 0 {
            return;
        }
        for (file, kind) in STATE_FILES {
            if let Some(a) = self.case.arr(file) {
                self.h.write(self.id, kind, a.row(t - 1));
            }
        }
        self.param = self.case.arr("params").unwrap().row(t - 1).to_vec();
        self.h.set_step(self.id, t as u64);
    }

    fn step(&mut self, t: usize, grads: &Npy) {
        let g = grads.row(t - 1).to_vec();
        self.h.step(self.id, &mut self.param, &g);
    }

    /// Exact comparison of everything after step `t`.
    fn assert_exact(&self, t: usize) {
        let c = self.case;
        assert!(
            self.param == c.arr("params").unwrap().row(t - 1),
            "{} step {t}: params differ",
            c.name
        );
        for (file, kind) in STATE_FILES {
            if let Some(a) = c.arr(file) {
                assert!(
                    self.h.read(self.id, kind) == a.row(t - 1),
                    "{} step {t}: {file} differs",
                    c.name
                );
            }
        }
        let nonfinite = i64s(c.arr("nonfinite").unwrap().row(0))[t - 1];
        assert_eq!(
            self.h.info(self.id).nonfinite_count as i64,
            nonfinite,
            "{} step {t}: nonfinite",
            c.name
        );
        assert_eq!(self.h.info(self.id).step, t as u64);
    }

    /// Rule 3's bounds for results that pass through a reduction into a scale.
    fn assert_within_reduction_bounds(&self, t: usize) {
        let c = self.case;
        let want = c.arr("params").unwrap();
        let es = c.elem_size();
        let worst = self
            .param
            .chunks(es)
            .zip(want.row(t - 1).chunks(es))
            .map(|(a, b)| ulps(a, b))
            .max()
            .unwrap();
        assert!(worst <= 2, "{} step {t}: params {worst} ulp apart", c.name);
        for (file, kind) in STATE_FILES {
            let Some(a) = c.arr(file) else { continue };
            let ours = self.h.read(self.id, kind);
            let theirs = a.row(t - 1);
            match file {
                "state1" | "state2" if a.descr == "|u1" => {
                    let differ = ours.iter().zip(theirs).filter(|(x, y)| x != y).count();
                    let far = ours
                        .iter()
                        .zip(theirs)
                        .any(|(&x, &y)| (x as i32 - y as i32).abs() > 1);
                    assert!(
                        !far && differ * 1000 <= ours.len(),
                        "{} step {t}: {file}: {differ} codes differ",
                        c.name
                    );
                }
                "gnorm_vec" => {
                    for (x, y) in f32s(&ours).iter().zip(f32s(theirs)) {
                        assert!(
                            (x - y).abs() <= 4.0 * f32::EPSILON * y.abs(),
                            "{} step {t}: gnorm {x} vs {y}",
                            c.name
                        );
                    }
                }
                _ => {
                    let worst = ours
                        .chunks(4)
                        .zip(theirs.chunks(4))
                        .map(|(x, y)| ulps(x, y))
                        .max()
                        .unwrap();
                    assert!(worst <= 2, "{} step {t}: {file} {worst} ulp apart", c.name);
                }
            }
        }
        if let Some(u) = c.arr("unorm_vec") {
            let (x, y) = (
                f32s(&self.h.read(self.id, BNB_UNORM_VEC))[0],
                f32s(u.row(t - 1))[0],
            );
            assert!(
                (x - y).abs() <= 4.0 * f32::EPSILON * y.abs(),
                "{} step {t}: unorm {x} vs {y}",
                c.name
            );
        }
        if let Some(s) = c.arr("gnorm_scale") {
            let (x, y) = (self.h.info(self.id).gnorm_scale, f32s(s.row(0))[t - 1]);
            assert!(
                ulps(&x.to_le_bytes(), &y.to_le_bytes()) <= 2,
                "{} step {t}: gnorm_scale {x} vs {y}",
                c.name
            );
        }
        let nonfinite = i64s(c.arr("nonfinite").unwrap().row(0))[t - 1];
        assert_eq!(self.h.info(self.id).nonfinite_count as i64, nonfinite);
    }
}

#[test]
fn every_case_bit_for_bit_free_running() {
    let mut checked = 0;
    for case in Case::all("vectors")
        .iter()
        .filter(|c| !needs_reduction_bounds(c))
    {
        let grads = case.arr("grads").unwrap();
        let mut run = Run::new(case);
        for t in 1..=case.steps() {
            run.step(t, &grads);
            run.assert_exact(t);
        }
        checked += 1;
    }
    assert_eq!(
        checked, 18,
        "blockwise, non-blockwise and 32-bit cases without a norm"
    );
}

#[test]
fn every_case_teacher_forced() {
    let mut exact = 0;
    let mut bounded = 0;
    for case in Case::all("vectors") {
        let grads = case.arr("grads").unwrap();
        let mut run = Run::new(&case);
        for t in 1..=case.steps() {
            run.teacher_force(t - 1);
            run.step(t, &grads);
            if needs_reduction_bounds(&case) {
                run.assert_within_reduction_bounds(t);
            } else {
                run.assert_exact(t);
            }
        }
        if needs_reduction_bounds(&case) {
            bounded += 1;
        } else {
            exact += 1;
        }
    }
    assert_eq!((exact, bounded), (18, 6));
}

#[test]
fn paths_follow_the_cases() {
    for case in Case::all("vectors") {
        let run = Run::new(&case);
        let want = match case.json["state_kind"].as_str().unwrap() {
            "8bit_blockwise" => BNB_PATH_BLOCKWISE8,
            "8bit_nonblockwise" => BNB_PATH_DYNAMIC8,
            "32bit" => BNB_PATH_FP32,
            k => panic!("{k}"),
        };
        assert_eq!(run.h.info(run.id).path, want, "{}", case.name);
    }
}

/// Rule 8: all 256 entries of both maps, bit for bit, equal the maps stored with every case
/// that keeps them, the reference's (`vectors`) and bitsandbytes 0.50.2's (`oracle`), and are
/// what the ABI exports.
#[test]
fn maps_equal_the_stored_maps_bit_for_bit() {
    use adam8bit::qmap::{SIGNED_BITS, UNSIGNED_BITS};
    let h = Handle::new(&config_default());
    let id = h.add(4096, BNB_DTYPE_F32);
    let mut compared = 0;
    for (name, kind, ours) in [
        ("qmap1", BNB_QMAP1, &SIGNED_BITS),
        ("qmap2", BNB_QMAP2, &UNSIGNED_BITS),
    ] {
        let check = |bits: &[u8], whose: &str| {
            assert_eq!(bits.len(), 256 * 4, "{whose}: {name} size");
            for (i, (b, &want)) in bits.chunks_exact(4).zip(ours).enumerate() {
                let got = u32::from_le_bytes(b.try_into().unwrap());
                assert_eq!(
                    got, want,
                    "{whose}: {name}[{i}] is {got:#010x}, the library's {want:#010x}"
                );
            }
        };
        check(&h.read(id, kind), "the ABI");
        for set in ["vectors", "oracle"] {
            for case in Case::all(set) {
                if let Some(npy) = case.arr(name) {
                    assert_eq!((npy.descr.as_str(), &npy.shape[..]), ("<f4", &[256][..]));
                    check(&npy.data, &format!("{set}/{}", case.name));
                    compared += 1;
                }
            }
        }
    }
    // 18 reference cases and 7 bitsandbytes traces keep 8-bit state.
    assert_eq!(compared, 2 * (18 + 7));
}
