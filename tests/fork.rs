//! A fork()ed child keeps using a CPU handle. The parent's worker threads stay in the parent, so
//! work handed to the inherited pool would wait forever; the library notices the new process
//! and starts new workers there. The child's step must equal the parent's, bit for bit.
//!
//! Its own binary (no test harness): a fork while other test threads hold locks would make
//! the child's outcome depend on them.

mod common;
use common::checkpoint::{random_elems, temp_dir};
use common::*;

use std::time::{Duration, Instant};

use adam8bit::ffi::handle::bnb_set_num_threads;
use adam8bit::ffi::types::*;

/// The child's exit codes.
const STEPPED: i32 = 0;
const FAILED: i32 = 3;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("forked_child_steps_like_the_parent: test");
        return;
    }
    let started = Instant::now();
    ok(bnb_set_num_threads(2));
    let h = Handle::new(&config_default());
    let n = 300_000;
    let id = h.add(n as u64, BNB_DTYPE_F32);
    let mut rng = Rng(5);
    let mut p = random_elems(&mut rng, n, BNB_DTYPE_F32, 1.0);
    let g = random_elems(&mut rng, n, BNB_DTYPE_F32, 0.1);
    h.step(id, &mut p, &g); // the pool's threads now run, in this process only
    let dir = temp_dir("fork");
    let out = dir.join("child-param.bin");

    // SAFETY: the child only steps, writes a file and leaves with _exit.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed");
    if child == 0 {
        let code = std::panic::catch_unwind(|| {
            let mut q = p.clone();
            h.step(id, &mut q, &g);
            std::fs::write(&out, &q).unwrap();
        })
        .map_or(FAILED, |()| STEPPED);
        unsafe { libc::_exit(code) };
    }

    // The child would hang on the inherited pool: wait at most a minute.
    let mut status = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        if r == child {
            break;
        }
        if Instant::now() > deadline {
            unsafe { libc::kill(child, libc::SIGKILL) };
            panic!("the forked child's step did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == STEPPED,
        "the child failed (wait status {status:#x})"
    );
    h.step(id, &mut p, &g);
    assert!(
        std::fs::read(&out).unwrap() == p,
        "the child's step differs from the parent's"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    println!(
        "test forked_child_steps_like_the_parent ... ok ({:?})",
        started.elapsed()
    );
    println!("1 passed, 0 failed");
}
