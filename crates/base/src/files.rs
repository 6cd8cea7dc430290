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
    let mut file = AtomicFile::create(path, mode)?;
    file.write_all(bytes)?;
    file.commit()
}

/// A file being written atomically, streamed: it is written beside its
/// final name, and [`AtomicFile::commit`] syncs it, renames it into place
/// and syncs the directory. Dropped without a commit, it is removed and the
/// old file (if any) stays.
#[derive(Debug)]
pub struct AtomicFile {
    temp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl AtomicFile {
    /// Starts writing `path` with permissions `mode` (from the moment the
    /// file exists).
    pub fn create(path: &Path, mode: u32) -> std::io::Result<AtomicFile> {
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
        let file = options.open(&temp)?;
        Ok(AtomicFile {
            temp,
            path: path.to_path_buf(),
            dir,
            file: Some(std::io::BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// Makes the file durable under its final name. On failure the
    /// temporary file is removed and the old file (if any) stays.
    pub fn commit(mut self) -> std::io::Result<()> {
        let Some(writer) = self.file.take() else {
            return Err(std::io::Error::other("already committed"));
        };
        let placed = writer
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| file.sync_all())
            .and_then(|()| std::fs::rename(&self.temp, &self.path));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&self.temp);
            return Err(e);
        }
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(std::io::Error::other("already committed")),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(buf),
            None => Err(std::io::Error::other("already committed")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Why a secret file was not read. The message is a reason to put after
/// the file name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivateFileError {
    /// The file (or its metadata) could not be read.
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    /// Group or others may read the file.
    #[error("permissions {mode:o} let others read it; chmod 600")]
    Shared {
        /// The file's permission bits (`0o777` at most).
        mode: u32,
    },
}

/// Reads a secret file (a key), refusing one that group or others may
/// read.
pub fn read_private_file(path: &Path) -> Result<Zeroizing<String>, PrivateFileError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(PrivateFileError::Read)?);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(PrivateFileError::Read)?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(PrivateFileError::Shared { mode: mode & 0o777 });
        }
    }
    Ok(text)
}
