//! Files written atomically and secret files read with a permission check.

use std::io::Write;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Writes a file atomically: a temporary file beside it, fsync, rename,
/// fsync of the directory. Readers see the old file or the new one, never
/// a part.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, bytes, 0o644)
}

/// [`write_atomically`] for secrets: the file is readable by its owner only
/// from the moment it exists.
pub fn write_private_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, bytes, 0o600)
}

fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    let temp = dir.join(name);
    // A temporary file left by a crash is replaced, so the new one gets
    // the mode asked for.
    let _ = std::fs::remove_file(&temp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, path)?;
    std::fs::File::open(&dir)?.sync_all()
}

/// Reads a secret file (a key), refusing one that group or others may
/// read. The error is a reason to put after the file name.
pub fn read_private_file(path: &Path) -> Result<Zeroizing<String>, String> {
    let text =
        Zeroizing::new(std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("cannot read: {e}"))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "permissions {:o} let others read it; chmod 600",
                mode & 0o777
            ));
        }
    }
    Ok(text)
}
