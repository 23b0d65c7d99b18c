//! The golden vectors of `shared/vectors` (made by the executable reference of DECISIONS.md),
//! through the C ABI: bit for bit, free-running over every step and teacher-forced one step at
//! a time (DECISIONS rule 3). Only the cases whose results pass through a tensor-wide f64 norm
//! (percentile clipping, max_unorm) get rule 3's reduction bounds, and those are compared
//! teacher-forced, as the reference's README prescribes. Every case runs on a CPU handle and,
//! on the emulated device (tests/common/emulator.rs), on a CUDA handle.

mod common;
use common::device::DevBuf;
use common::emulator::on_emulator;
use common::*;

use adam8bit::ffi::types::*;
use adam8bit::rule3::{self, Field};

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

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Cpu,
    Cuda,
}

struct Run<'a> {
    case: &'a Case,
    h: Handle,
    id: u32,
    /// The parameters as the host last saw them (a CUDA run copies them through the device).
    param: Vec<u8>,
    backend: Backend,
}

impl<'a> Run<'a> {
    fn new(case: &'a Case, backend: Backend) -> Run<'a> {
        let h = match backend {
            Backend::Cpu => Handle::new(&case.config()),
            Backend::Cuda => Handle::new_cuda(&case.config()),
        };
        let id = h.add(case.n(), case.dtype());
        let param = case.arr("param_init").unwrap().data;
        Run {
            case,
            h,
            id,
            param,
            backend,
        }
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
        match self.backend {
            Backend::Cpu => self.h.step(self.id, &mut self.param, &g),
            Backend::Cuda => {
                // On the legacy stream, which the synchronous copies around it are ordered with.
                let (p, g) = (DevBuf::from(&self.param, 0), DevBuf::from(&g, 0));
                ok(self
                    .h
                    .step_device(&[(self.id, &p, &g)], std::ptr::null_mut()));
                self.param = p.read();
            }
        }
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
        let at = |what: &str, e: String| panic!("{} step {t}: {what}: {e}", c.name);
        let width = c.elem_size();
        let want = c.arr("params").unwrap();
        rule3::check(Field::Floats { width }, &self.param, want.row(t - 1), true)
            .unwrap_or_else(|e| at("params", e));
        for (file, kind) in STATE_FILES {
            let Some(a) = c.arr(file) else { continue };
            let field = match file {
                "state1" | "state2" if a.descr == "|u1" => Field::Codes,
                "gnorm_vec" => Field::SquaredNorms,
                _ => Field::Floats { width: 4 },
            };
            rule3::check(field, &self.h.read(self.id, kind), a.row(t - 1), true)
                .unwrap_or_else(|e| at(file, e));
        }
        if let Some(u) = c.arr("unorm_vec") {
            let ours = self.h.read(self.id, BNB_UNORM_VEC);
            rule3::check(Field::SquaredNorms, &ours, u.row(t - 1), true)
                .unwrap_or_else(|e| at("unorm_vec", e));
        }
        if let Some(s) = c.arr("gnorm_scale") {
            let ours = self.h.info(self.id).gnorm_scale.to_le_bytes();
            rule3::check(
                Field::Floats { width: 4 },
                &ours,
                &s.row(0)[4 * (t - 1)..4 * t],
                true,
            )
            .unwrap_or_else(|e| at("gnorm_scale", e));
        }
        let nonfinite = i64s(c.arr("nonfinite").unwrap().row(0))[t - 1];
        assert_eq!(self.h.info(self.id).nonfinite_count as i64, nonfinite);
    }
}

fn free_running(backend: Backend) {
    let mut checked = 0;
    for case in Case::all("vectors")
        .iter()
        .filter(|c| !needs_reduction_bounds(c))
    {
        let grads = case.arr("grads").unwrap();
        let mut run = Run::new(case, backend);
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

fn teacher_forced(backend: Backend) {
    let mut exact = 0;
    let mut bounded = 0;
    for case in Case::all("vectors") {
        let grads = case.arr("grads").unwrap();
        let mut run = Run::new(&case, backend);
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
fn every_case_bit_for_bit_free_running() {
    free_running(Backend::Cpu);
}

#[test]
fn every_case_teacher_forced() {
    teacher_forced(Backend::Cpu);
}

#[test]
fn every_case_on_a_cuda_handle() {
    on_emulator("every_case_on_a_cuda_handle", |_| {
        free_running(Backend::Cuda);
        teacher_forced(Backend::Cuda);
    });
}

#[test]
fn paths_follow_the_cases() {
    for case in Case::all("vectors") {
        let run = Run::new(&case, Backend::Cpu);
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
