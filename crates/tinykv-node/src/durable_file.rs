//! Small metadata files (the member marker) written so that a crash leaves
//! either the old content or the new, never a torn or empty file: written
//! to a temporary file, fsynced, renamed over the old one, and the
//! directory fsynced so the rename itself survives a power loss.

use std::io::Write;
use std::path::Path;

/// Replaces the file at `path` with `content`, atomically and durably.
pub fn write_atomic(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(content)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_is_replaced_whole_and_no_temporary_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("marker");
        write_atomic(&path, b"joining").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"joining");
        write_atomic(&path, b"normal").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"normal");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("marker")]);
        assert!(write_atomic(&dir.path().join("missing/marker"), b"x").is_err());
    }
}
