//! Adapters: the real implementations of the domain's ports.

pub mod azure;
pub mod bmc;
pub mod clock;
pub mod dryrun;
pub mod entra;
mod itsm_http;
pub mod jira;
pub mod pacing;
pub mod queue;
pub mod secrets;
pub mod servicenow;
pub mod store;
pub mod wire;

pub use itsm_http::HttpClientError;

/// Creates `dir` (and its parents) readable by its owner only, when it
/// does not exist yet; an existing folder is left as its owner set it.
pub(crate) fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    if dir.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "it is a file, not a folder",
        ));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes a file only its owner can read (a signing key).
pub(crate) fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

/// Makes an existing file readable by its owner only (the embedded store).
pub(crate) fn make_private(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}
