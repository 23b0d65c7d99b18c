//! A crash during a save never loses the previous checkpoint: this binary re-executes itself
//! as a child that saves a large checkpoint in a loop (each save with a different, self-
//! describing content), kills it with SIGKILL at random moments, and after every kill loads
//! the file and checks that it is one complete save. The run ends only once several kills
//! have landed in the middle of a save (a temporary file was left behind). First, a save must
//! get past temporary files that a killed process with the same pid left.

mod common;
use common::checkpoint::*;
use common::*;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use adam8bit::ffi::types::*;

const CHILD: &str = "BNB_CRASH_TEST_CHILD";
const NUMEL: u64 = 4 << 20;
const MID_SAVE_KILLS: usize = 3;
const MAX_KILLS: usize = 200;

fn handle() -> Handle {
    let h = Handle::new(&config_default());
    h.add(NUMEL, BNB_DTYPE_F32);
    h
}

/// Save number `k`: step k, every code of both states `k % 251`.
fn save_version(h: &Handle, k: u64, path: &Path) {
    let fill = vec![(k % 251) as u8; NUMEL as usize];
    h.write(0, BNB_STATE1, &fill);
    h.write(0, BNB_STATE2, &fill);
    h.set_step(0, k);
    ok(h.save(path));
}

/// The child: saves versions 1, 2, 3, ... until it is killed (or, as a guard, for 60 s).
fn child(path: &Path) {
    let h = handle();
    let start = Instant::now();
    let mut k = 1;
    while start.elapsed() < Duration::from_secs(60) {
        save_version(&h, k, path);
        k += 1;
    }
}

/// The file holds one complete save: returns its number.
fn check_intact(path: &Path) -> u64 {
    let h = handle();
    ok(h.load(path));
    let k = h.info(0).step;
    for kind in [BNB_STATE1, BNB_STATE2] {
        assert!(
            h.read(0, kind).iter().all(|&b| b == (k % 251) as u8),
            "save {k}: state {kind} is not the content of that save"
        );
    }
    k
}

fn parent() {
    let dir = temp_dir("crash");
    let path = dir.join("ckpt.safetensors");
    save_version(&handle(), 0, &path);
    let mut rng = Rng(0xdead_beef);
    let (mut kills, mut mid_save, mut newest) = (0, 0, 0);
    while mid_save < MID_SAVE_KILLS {
        assert!(
            kills < MAX_KILLS,
            "{kills} kills, only {mid_save} during a save"
        );
        let mut c = Command::new(std::env::current_exe().unwrap())
            .env(CHILD, &path)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20 + rng.next_u64() % 300));
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        kills += 1;
        let strays: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| *p != path)
            .collect();
        if !strays.is_empty() {
            mid_save += 1;
        }
        for s in strays {
            std::fs::remove_file(s).unwrap();
        }
        newest = newest.max(check_intact(&path));
    }
    assert!(newest > 0, "no save ever completed");
    std::fs::remove_dir_all(&dir).unwrap();
    println!("{kills} kills, {mid_save} during a save, newest intact save {newest}");
}

/// A killed save's temporary file keeps its name; a later process may have the same pid (a
/// restarted container) and so try the same names. Its save must skip them, not fail on them
/// or delete them. Runs first, before this process has saved anything, so the names it
/// pre-creates are exactly the ones its first save tries.
fn stale_temporaries_neither_block_nor_vanish() {
    let dir = temp_dir("stale");
    let path = dir.join("ckpt.safetensors");
    let pid = std::process::id();
    let stale = |n: u32| dir.join(format!("ckpt.safetensors.{pid}.{n}.tmp"));
    for n in 0..20 {
        std::fs::write(stale(n), format!("stale {n}")).unwrap();
    }
    save_version(&handle(), 7, &path);
    assert_eq!(check_intact(&path), 7);
    for n in 0..20 {
        assert_eq!(
            std::fs::read_to_string(stale(n)).unwrap(),
            format!("stale {n}")
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn main() {
    if let Some(path) = std::env::var_os(CHILD) {
        child(Path::new(&path));
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        println!("stale_temporaries_neither_block_nor_vanish: test");
        println!("previous_checkpoint_survives_a_kill_during_save: test");
        return;
    }
    stale_temporaries_neither_block_nor_vanish();
    println!("test stale_temporaries_neither_block_nor_vanish ... ok");
    let started = Instant::now();
    parent();
    println!(
        "test previous_checkpoint_survives_a_kill_during_save ... ok ({:?})",
        started.elapsed()
    );
    println!("2 passed, 0 failed");
}
