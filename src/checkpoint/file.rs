//! Files: a crash-safe replace (temporary file in the same directory, fsync, rename, fsync of
//! the directory) and a read that allocates exactly the file's size.

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
/// possibly a stray temporary beside it, `<name>.<pid>.<n>.tmp`).
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
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error(path, "rename", e));
    }
    // The rename is durable only once the directory entry is on disk.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "fsync of the directory", e))
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
