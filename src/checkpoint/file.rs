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

/// `<name>.<pid>.<n>.tmp` beside `path`: the same directory, so the rename cannot cross file
/// systems, and one per call (process id and a per-process counter), so concurrent savers,
/// threads of one process included, never write into each other's file.
fn temp_path(path: &Path) -> Result<PathBuf> {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{}: not a file name", path.display())))?;
    let mut tmp = name.to_os_string();
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    tmp.push(format!(".{}.{n}.tmp", std::process::id()));
    Ok(path.with_file_name(tmp))
}

/// Replaces `path` by what `write` puts into a fresh file: a crash at any moment leaves
/// either the old file or the complete new one (and possibly a stray temporary beside it,
/// `<name>.<pid>.<n>.tmp`).
pub fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_path(path)?;
    let written = write(&tmp).and_then(|()| {
        set_mode(&tmp, path)?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_error(&tmp, "fsync", e))
    });
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
