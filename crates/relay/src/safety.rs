//! Trust checks for the local files and sockets that carry events (prompts, commands, file
//! contents): a directory is used only if it is ours and closed to others, and a relay is
//! talked to only if it runs as us.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// The user this process runs as.
pub fn uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Creates `dir` (and missing parents) with mode 0700, or checks the one that exists: it must
/// be a real directory owned by us and writable by nobody else. An existing directory is never
/// `chmod`ed: one we did not create is not ours to change.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
            check_dir(dir)
        }
        Err(error) => Err(error),
        Ok(_) => check_dir(dir),
    }
}

/// Checks that `dir` is a directory (not a link) owned by us and not group- or
/// world-writable.
pub fn check_dir(dir: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not safe to use: {why}", dir.display()),
        ))
    };
    if !meta.is_dir() {
        return refuse("not a directory".to_string());
    }
    if meta.uid() != uid() {
        return refuse(format!("owned by uid {}, not {}", meta.uid(), uid()));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return refuse(format!(
            "writable by others (mode {:o})",
            meta.permissions().mode() & 0o777
        ));
    }
    Ok(())
}

/// Checks that the process at the other end of a Unix `stream` runs as us.
pub fn check_peer(stream: &impl std::os::fd::AsFd) -> io::Result<()> {
    let peer = rustix::net::sockopt::socket_peercred(stream)?;
    let theirs = peer.uid.as_raw();
    if theirs == uid() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the other end of the relay socket runs as uid {theirs}, not {}",
                uid()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_world_writable_dir_is_refused_and_left_as_it_was() {
        let dir = std::env::temp_dir().join(format!("sluice-safety-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        private_dir(&dir).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = private_dir(&dir).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
        assert!(error.to_string().contains("writable by others"), "{error}");
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o777,
            "not chmod-ed"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_link_is_not_a_directory_we_trust() {
        let base = std::env::temp_dir().join(format!("sluice-safety-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("real")).unwrap();
        std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
        assert!(check_dir(&base.join("link")).is_err());
        let _ = std::fs::remove_dir_all(&base);
    }
}
