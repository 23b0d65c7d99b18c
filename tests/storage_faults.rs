//! Storage faults: every call by which a save, a load, a merge or a split reaches the file
//! system fails in turn, through an `LD_PRELOAD` interposer (`tests/faults/faults.c`) in a
//! child process: once with EIO (a failing device) and, where a full disk shows, once with
//! ENOSPC. Each operation runs once without a fault to count its calls per group (open, read,
//! write, fsync, chmod, rename, close, unlink), then once per call and errno with that one call
//! failing. Through the library and through the `adam8bit-ckpt` tool.
//!
//! A failed call must return `BNB_ERR_IO` (the tool: exit status 6) with the errno's text in
//! its message and change nothing: every file byte for byte as before (a split may have
//! written the files of the ranks before the failing one, as documented), no temporary file
//! beside them, the handle as it was. Two kinds of call cannot fail an operation, and do not:
//! a close (it follows a successful fsync of the same file, or ends a read) and the removal of
//! the file a save replaced (the save is complete by then; the previous checkpoint stays
//! beside it under the temporary name).

mod common;
use common::checkpoint::*;
use common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use adam8bit::ffi::types::*;

/// Set in a child: the operation it runs (`save`, `load`, `merge` or `split`).
const CHILD: &str = "BNB_FAULTS_CHILD";
/// Set in a child: the fixture's directory.
const DIR: &str = "BNB_FAULTS_DIR";

/// Elements of the parameter whose state arrays exceed the 1 MiB write buffer, so a save
/// writes some arrays directly and others through the buffer.
const BIG: u64 = 3 << 19;
const WORLD: u32 = 2;

/// Handle `seed`: [`mixed_handle`] and the large parameter, with seed-dependent state.
fn state_handle(seed: u64) -> Handle {
    let h = mixed_handle(seed, 3);
    let id = h.add(BIG, BNB_DTYPE_F32);
    h.write(id, BNB_STATE1, &vec![seed as u8; BIG as usize]);
    h.write(id, BNB_STATE2, &vec![!seed as u8; BIG as usize]);
    h
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Save,
    Load,
    Merge,
    Split,
    ToolMerge,
    ToolSplit,
}

impl Op {
    const ALL: [Op; 6] = [
        Op::Save,
        Op::Load,
        Op::Merge,
        Op::Split,
        Op::ToolMerge,
        Op::ToolSplit,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::Save => "bnb_adam8bit_save",
            Op::Load => "bnb_adam8bit_load",
            Op::Merge => "bnb_checkpoint_merge",
            Op::Split => "bnb_checkpoint_split",
            Op::ToolMerge => "adam8bit-ckpt merge",
            Op::ToolSplit => "adam8bit-ckpt split",
        }
    }
}

/// The files every operation works on. At rest, `ckpt` and `merged` hold checkpoint A (the
/// previous one), `out.<r>-of-2` the parts of A; `full` and `in.<r>-of-2` hold checkpoint B
/// and its parts, which the operations write over them: a save of handle B to `ckpt`, a
/// merge of the `in` parts to `merged`, a split of `full` to the `out` parts. A load reads
/// `ckpt` into handle B.
struct Fixture {
    dir: PathBuf,
    /// Every file and its bytes at rest.
    files: BTreeMap<PathBuf, Vec<u8>>,
}

impl Fixture {
    /// The files in `dir`, as a child sees them (it needs their names only).
    fn at(dir: PathBuf) -> Fixture {
        Fixture {
            dir,
            files: BTreeMap::new(),
        }
    }

    fn new() -> Fixture {
        let dir = temp_dir("storage-faults");
        assert_exchange_works(&dir);
        let (a, b) = (state_handle(1), state_handle(2));
        let (ckpt, full) = (dir.join("ckpt.safetensors"), dir.join("full.safetensors"));
        ok(a.save(&ckpt));
        ok(b.save(&full));
        ok(split(&ckpt, WORLD, &dir.join("out")));
        ok(split(&full, WORLD, &dir.join("in")));
        std::fs::copy(&ckpt, dir.join("merged.safetensors")).unwrap();
        Fixture {
            files: dir_contents(&dir),
            ..Fixture::at(dir)
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn parts(&self, prefix: &str) -> Vec<PathBuf> {
        (0..WORLD)
            .map(|r| part(&self.path(prefix), r, WORLD))
            .collect()
    }

    /// The files `op` writes, each with the bytes it must end with on success.
    fn targets(&self, op: Op) -> Vec<(PathBuf, &[u8])> {
        let bytes = |p: &Path| &self.files[p][..];
        match op {
            Op::Save => vec![(
                self.path("ckpt.safetensors"),
                bytes(&self.path("full.safetensors")),
            )],
            Op::Load => vec![],
            Op::Merge | Op::ToolMerge => vec![(
                self.path("merged.safetensors"),
                bytes(&self.path("full.safetensors")),
            )],
            Op::Split | Op::ToolSplit => self
                .parts("out")
                .into_iter()
                .zip(self.parts("in"))
                .map(|(out, input)| (out, bytes(&input)))
                .collect(),
        }
    }

    /// The command that runs `op`.
    fn command(&self, op: Op) -> Command {
        let s = |p: PathBuf| p.into_os_string();
        let mut c = match op {
            Op::ToolMerge => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_adam8bit-ckpt"));
                c.arg("merge").arg(s(self.path("merged.safetensors")));
                c.args(self.parts("in"));
                c
            }
            Op::ToolSplit => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_adam8bit-ckpt"));
                c.arg("split").arg(s(self.path("full.safetensors")));
                c.arg(WORLD.to_string()).arg(s(self.path("out")));
                c
            }
            _ => {
                let mut c = Command::new(std::env::current_exe().unwrap());
                c.env(CHILD, format!("{op:?}")).env(DIR, &self.dir);
                c
            }
        };
        // A program that cannot call a8f_arm counts and fails from its start.
        if matches!(op, Op::ToolMerge | Op::ToolSplit) {
            c.env("A8F_ARM", "1");
        }
        c
    }

    /// After one run: the targets are a prefix of new files and a suffix of previous ones
    /// (only the new ones when `complete`, at least one previous one otherwise), every other
    /// file as before, no other file but, where `stray_allowed`, one temporary file holding a
    /// previous target. Puts every file back as it was.
    fn check_and_restore(&self, op: Op, complete: bool, stray_allowed: bool, what: &str) {
        let targets = self.targets(op);
        let now: Vec<bool> = targets
            .iter()
            .map(|(p, new)| {
                let bytes = std::fs::read(p).unwrap();
                assert!(
                    bytes == *new || bytes == self.files[p],
                    "{what}: {} is neither the previous nor the new file",
                    p.display()
                );
                bytes == *new
            })
            .collect();
        let written = now.iter().take_while(|&&n| n).count();
        assert!(
            now[written..].iter().all(|&n| !n),
            "{what}: the files written are not the first ones: {now:?}"
        );
        if complete {
            assert_eq!(written, targets.len(), "{what}: not every file was written");
        } else if !targets.is_empty() {
            assert!(
                written < targets.len(),
                "{what}: failed, yet wrote every file"
            );
        }
        let mut strays = 0;
        for e in std::fs::read_dir(&self.dir).unwrap() {
            let p = e.unwrap().path();
            match self.files.get(&p) {
                Some(rest) if !targets.iter().any(|(t, _)| *t == p) => {
                    assert!(
                        std::fs::read(&p).unwrap() == *rest,
                        "{what}: {} changed",
                        p.display()
                    )
                }
                Some(_) => {}
                None => {
                    let bytes = std::fs::read(&p).unwrap();
                    assert!(
                        stray_allowed && targets.iter().any(|(t, _)| bytes == self.files[t]),
                        "{what}: {} left behind",
                        p.display()
                    );
                    strays += 1;
                    std::fs::remove_file(&p).unwrap();
                }
            }
        }
        assert!(strays <= 1, "{what}: {strays} files left behind");
        for (p, _) in targets.iter().take(written) {
            std::fs::write(p, &self.files[p]).unwrap();
        }
    }
}

/// A failed save keeps the previous file only where the file system can exchange two files
/// (ext4, xfs, btrfs, tmpfs can); elsewhere docs/checkpoint.md's exception applies, and this
/// test would report it as a failure.
fn assert_exchange_works(dir: &Path) {
    let (a, b) = (dir.join("a"), dir.join("b"));
    std::fs::write(&a, "a").unwrap();
    std::fs::write(&b, "b").unwrap();
    let (ca, cb) = (cpath(&a), cpath(&b));
    // SAFETY: two NUL-terminated paths that outlive the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    assert_eq!(
        (r, std::fs::read_to_string(&a).unwrap().as_str()),
        (0, "b"),
        "{}: its file system cannot exchange two files (RENAME_EXCHANGE): run with TMPDIR elsewhere",
        dir.display()
    );
    std::fs::remove_file(a).unwrap();
    std::fs::remove_file(b).unwrap();
}

/// What one run reported: the status (the tool's exit status), the message, and whether the
/// handle is as it must be (unchanged after an error; after a load, the checkpoint's state).
struct Outcome {
    status: bnb_status_t,
    message: String,
    handle_ok: bool,
}

fn run(fx: &Fixture, op: Op, lib: &Path, fault: Option<String>, counts: Option<&Path>) -> Outcome {
    let mut c = fx.command(op);
    c.env("LD_PRELOAD", lib);
    if let Some(f) = fault {
        c.env("A8F_FAIL", f);
    }
    if let Some(p) = counts {
        c.env("A8F_COUNTS", p);
    }
    let out = c.output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let code = out.status.code().unwrap_or(-1);
    if matches!(op, Op::ToolMerge | Op::ToolSplit) {
        return Outcome {
            status: code,
            message: stderr.into_owned(),
            handle_ok: true,
        };
    }
    assert_eq!(code, 0, "{} child failed:\n{stdout}\n{stderr}", op.name());
    let (head, message) = stdout.split_once('\n').unwrap_or((&stdout, ""));
    let (status, handle_ok) = head.split_once(' ').expect("the child's status line");
    Outcome {
        status: status.parse().unwrap(),
        message: message.trim_end().to_string(),
        handle_ok: handle_ok == "true",
    }
}

/// The child: runs `op` on the fixture's files with the interposer armed around the call
/// only, then prints `<status> <handle as it must be>` and the message.
fn child(op: &str, fx: &Fixture) {
    let (status, message, handle_ok) = match op {
        "Save" | "Load" => {
            let h = state_handle(2);
            let before = h.snapshot();
            let loaded = if op == "Load" {
                state_handle(1).snapshot()
            } else {
                before.clone()
            };
            let ckpt = fx.path("ckpt.safetensors");
            arm(true);
            let s = if op == "Save" {
                h.save(&ckpt)
            } else {
                h.load(&ckpt)
            };
            arm(false);
            let m = message();
            let after = h.snapshot();
            (s, m, after == if s == BNB_OK { loaded } else { before })
        }
        "Merge" => {
            arm(true);
            let s = merge(&fx.parts("in"), &fx.path("merged.safetensors"));
            arm(false);
            (s, message(), true)
        }
        "Split" => {
            arm(true);
            let s = split(&fx.path("full.safetensors"), WORLD, &fx.path("out"));
            arm(false);
            (s, message(), true)
        }
        _ => panic!("unknown child operation {op}"),
    };
    println!("{status} {handle_ok}\n{message}");
}

/// faults.c's `a8f_arm`: counting and failing only around the operation, not the setup.
fn arm(on: bool) {
    // SAFETY: the symbol is faults.c's `void a8f_arm(int)`, preloaded by the parent.
    unsafe {
        let f = libc::dlsym(libc::RTLD_DEFAULT, c"a8f_arm".as_ptr());
        assert!(!f.is_null(), "the child runs without the interposer");
        let f: extern "C" fn(i32) = std::mem::transmute(f);
        f(on as i32);
    }
}

/// Compiles the interposer once per test run.
fn interposer() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faults/faults.c");
    let lib = Path::new(env!("CARGO_TARGET_TMPDIR")).join("libfaults.so");
    let flags = [
        "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o",
    ];
    let mut args: Vec<&std::ffi::OsStr> = flags.iter().map(|f| f.as_ref()).collect();
    args.extend([lib.as_os_str(), src.as_os_str(), "-ldl".as_ref()]);
    compile("CC", "cc", &args);
    lib
}

/// The errnos injected into a group's calls: EIO everywhere, ENOSPC where a full disk shows.
fn errnos(group: &str) -> &'static [i32] {
    match group {
        "open" | "write" | "fsync" | "rename" | "close" => &[libc::EIO, libc::ENOSPC],
        _ => &[libc::EIO],
    }
}

/// The calls of each group that one fault-free run of `op` makes.
fn count_calls(fx: &Fixture, op: Op, lib: &Path) -> Vec<(String, u64)> {
    let counts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-counts.txt");
    let o = run(fx, op, lib, None, Some(&counts));
    assert_eq!(
        o.status,
        BNB_OK,
        "{} without faults: {}",
        op.name(),
        o.message
    );
    assert!(
        o.handle_ok,
        "{}: the handle is not as it must be",
        op.name()
    );
    fx.check_and_restore(op, true, false, &format!("{} without faults", op.name()));
    std::fs::read_to_string(&counts)
        .unwrap()
        .lines()
        .map(|l| {
            let (g, n) = l.split_once(' ').unwrap();
            (g.to_string(), n.parse().unwrap())
        })
        .filter(|&(_, n)| n > 0)
        .collect()
}

/// Fails every call of `op` in turn; returns the figures line.
fn every_fault(fx: &Fixture, op: Op, lib: &Path) -> String {
    let calls = count_calls(fx, op, lib);
    let (mut injected, mut io, mut harmless) = (0, 0, 0);
    for (group, n) in &calls {
        let harmless_group = group == "close" || group == "unlink";
        for k in 1..=*n {
            for &errno in errnos(group) {
                let what = format!(
                    "{}: call {k} of {group} fails with errno {errno}",
                    op.name()
                );
                let o = run(fx, op, lib, Some(format!("{group}:{k}:{errno}")), None);
                injected += 1;
                assert!(o.handle_ok, "{what}: the handle changed");
                if harmless_group {
                    assert_eq!(o.status, BNB_OK, "{what}: {}", o.message);
                    harmless += 1;
                } else {
                    assert_eq!(o.status, BNB_ERR_IO, "{what}: {}", o.message);
                    let text = std::io::Error::from_raw_os_error(errno).to_string();
                    let text = text.split(" (os error").next().unwrap();
                    assert!(o.message.contains(text), "{what}: message {:?}", o.message);
                    io += 1;
                }
                fx.check_and_restore(op, harmless_group, group == "unlink", &what);
            }
        }
    }
    let per_group: Vec<String> = calls.iter().map(|(g, n)| format!("{g} {n}")).collect();
    format!(
        "{injected} faults in {} calls ({}): {io} BNB_ERR_IO with nothing lost, {harmless} \
         harmless (close, removal of the replaced file) and complete",
        calls.iter().map(|(_, n)| n).sum::<u64>(),
        per_group.join(", ")
    )
}

fn main() {
    if let Some(op) = std::env::var_os(CHILD) {
        let dir = PathBuf::from(std::env::var_os(DIR).unwrap());
        child(op.to_str().unwrap(), &Fixture::at(dir));
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        for op in Op::ALL {
            println!("every_fault_of {}: test", op.name());
        }
        return;
    }
    let lib = interposer();
    let fx = Fixture::new();
    for op in Op::ALL {
        let started = std::time::Instant::now();
        let figures = every_fault(&fx, op, &lib);
        println!(
            "test every_fault_of {} ... ok ({:.1?}): {figures}",
            op.name(),
            started.elapsed()
        );
    }
    std::fs::remove_dir_all(&fx.dir).unwrap();
    println!("{} passed, 0 failed", Op::ALL.len());
}
