//! Files: a crash-safe replace (temporary file in the same directory, fsync, an atomic
//! exchange with the target, fsync of the directory) and a read that allocates exactly the
//! file's size.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

fn io_error(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::Io(format!("{}: {what}: {e}", path.display()))
}

/// How many names [`create_temp`] tries before giving up.
const TEMP_ATTEMPTS: u32 = 1000;

/// Creates `<name>.<pid>.<n>.tmp` beside `path`, exclusively: the same directory, so the rename
/// cannot cross file systems, and never a file that exists already. `n` counts calls within the
/// process, so concurrent savers (threads of one process included) never share a file; a name
/// left by a killed process that had the same pid (a restarted container) is skipped, not
/// reused or deleted.
fn create_temp(path: &Path) -> Result<(File, PathBuf)> {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{}: not a file name", path.display())))?;
    for _ in 0..TEMP_ATTEMPTS {
        let mut tmp = name.to_os_string();
        let n = CALLS.fetch_add(1, Ordering::Relaxed);
        tmp.push(format!(".{}.{n}.tmp", std::process::id()));
        let tmp = path.with_file_name(tmp);
        match File::create_new(&tmp) {
            Ok(file) => return Ok((file, tmp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_error(&tmp, "create", e)),
        }
    }
    Err(Error::Io(format!(
        "{}: {TEMP_ATTEMPTS} temporary names beside it exist already; remove the stale \
         `*.tmp` files of killed saves",
        path.display()
    )))
}

/// Replaces `path` by what `write` puts into a fresh file (named by its second argument, for
/// messages): a crash at any moment leaves either the old file or the complete new one (and
/// possibly a stray temporary beside it, `<name>.<pid>.<n>.tmp`). An error at any step leaves
/// `path` as it was and no temporary file; the one exception is a file system that cannot
/// exchange two files (see [`Replaced::Overwritten`]) and then fails the directory's fsync.
///
/// Errors of `close` are not seen (std's `File` drops them): every close here follows a
/// successful fsync of the same file, after which there is nothing left for it to report.
pub fn write_atomic(path: &Path, write: impl FnOnce(&File, &Path) -> Result<()>) -> Result<()> {
    let (file, tmp) = create_temp(path)?;
    let written = write(&file, &tmp).and_then(|()| {
        set_mode(&tmp, path)?;
        file.sync_all().map_err(|e| io_error(&tmp, "fsync", e))
    });
    drop(file);
    if let Err(e) = written {
        // The temporary file is ours and incomplete; the target was never touched.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let replaced = match replace(&tmp, path) {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_error(path, "rename", e));
        }
    };
    // The new directory entry is durable only once the directory is on disk.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => {
            if replaced == Replaced::Exchanged {
                // The previous file, now under the temporary name. Should this fail, the save
                // has still succeeded; the stray file is a complete older checkpoint.
                let _ = std::fs::remove_file(&tmp);
            }
            Ok(())
        }
        Err(e) => Err(Error::Io(format!(
            "{}: fsync of the directory: {e}; {}",
            dir.display(),
            undo(replaced, &tmp, path)
        ))),
    }
}

/// How the temporary file took the target's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replaced {
    /// Atomically exchanged with the previous file, which the temporary name now holds.
    Exchanged,
    /// Renamed to a name that did not exist.
    Created,
    /// Renamed over the previous file, which is gone: the file system cannot exchange two
    /// files (or the platform has no call for it).
    Overwritten,
}

/// Moves `tmp` to `path`, keeping any previous file under `tmp` where the file system can.
fn replace(tmp: &Path, path: &Path) -> std::io::Result<Replaced> {
    // A rename refuses to replace a directory; an exchange would move it aside, and the
    // cleanup could not delete it.
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(std::io::ErrorKind::IsADirectory.into());
    }
    match exchange(tmp, path) {
        Ok(()) => Ok(Replaced::Exchanged),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::rename(tmp, path).map(|()| Replaced::Created)
        }
        Err(e) if cannot_exchange(&e) => std::fs::rename(tmp, path).map(|()| Replaced::Overwritten),
        Err(e) => Err(e),
    }
}

/// After the directory could not be synced, puts `path` back as it was, so that the failed
/// save changed nothing; says where things are.
fn undo(replaced: Replaced, tmp: &Path, path: &Path) -> String {
    match replaced {
        Replaced::Exchanged => match exchange(tmp, path) {
            Ok(()) => {
                let _ = std::fs::remove_file(tmp);
                "the previous file is back in place".into()
            }
            Err(e) => format!(
                "the new file is in place and the previous one is {} (exchanging them back \
                 failed: {e})",
                tmp.display()
            ),
        },
        Replaced::Created => match std::fs::remove_file(path) {
            Ok(()) => "the new file was removed again".into(),
            Err(e) => format!("the new file is in place (removing it failed: {e})"),
        },
        Replaced::Overwritten => "the new file replaced the previous one (this file system \
                                  cannot exchange two files atomically, so the previous one \
                                  could not be kept)"
            .into(),
    }
}

/// Swaps the directory entries `a` and `b` atomically (`renameat2(RENAME_EXCHANGE)`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: two NUL-terminated strings that outlive the call, which only reads them.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// The errors by which a kernel, C library or file system says it has no atomic exchange.
fn cannot_exchange(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    if matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    ) {
        return true;
    }
    e.kind() == std::io::ErrorKind::Unsupported
}

/// A replaced checkpoint keeps the permissions of the file it replaces, whatever the umask; a
/// new one is readable by all (0644).
fn set_mode(tmp: &Path, target: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let perms = std::fs::metadata(target)
            .map(|m| m.permissions())
            .unwrap_or_else(|_| std::fs::Permissions::from_mode(0o644));
        std::fs::set_permissions(tmp, perms).map_err(|e| io_error(tmp, "chmod", e))?;
    }
    #[cfg(not(unix))]
    let _ = (tmp, target);
    Ok(())
}

/// The whole file, in a buffer of exactly its size.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|e| io_error(path, "open", e))?;
    let len = file
        .metadata()
        .map_err(|e| io_error(path, "stat", e))?
        .len();
    let cap = usize::try_from(len).map_err(|_| {
        Error::OutOfMemory(format!(
            "{}: {len} bytes do not fit in memory",
            path.display()
        ))
    })?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(cap).map_err(|_| {
        Error::OutOfMemory(format!("{}: cannot allocate {len} bytes", path.display()))
    })?;
    // `take` keeps a file that grows meanwhile from growing the buffer.
    file.take(len)
        .read_to_end(&mut buf)
        .map_err(|e| io_error(path, "read", e))?;
    if buf.len() as u64 != len {
        return Err(Error::Io(format!(
            "{}: the file shrank while it was read",
            path.display()
        )));
    }
    Ok(buf)
}
