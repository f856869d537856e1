//! The relay's Unix socket, bound and connected by path.
//!
//! - A socket path holds at most 107 bytes (`sun_path`). A longer one (a deep state
//!   directory) is reached through `/proc/self/fd/N/<name>`, `N` being the directory opened
//!   first: the socket still lives in that private directory, and no name in a
//!   world-writable one is ever used.
//! - A connect waits at most its budget (`SO_SNDTIMEO` bounds a Unix connect on Linux): a
//!   relay stopped with Ctrl-Z whose listen backlog is full cannot hold a hook.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{Mode, OFlags};
use rustix::net::{sockopt, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

/// The longest path `sun_path` takes, its terminating NUL left out.
const MAX_PATH: usize = 107;
/// The listen backlog of the relay's socket (what std's `UnixListener::bind` uses).
const BACKLOG: i32 = 128;

/// A socket address for `path`, and the directory handle that keeps a long one valid.
struct Address {
    addr: SocketAddrUnix,
    _dir: Option<OwnedFd>,
}

fn address(path: &Path) -> io::Result<Address> {
    if path.as_os_str().len() <= MAX_PATH {
        return Ok(Address {
            addr: SocketAddrUnix::new(path)?,
            _dir: None,
        });
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a socket path", path.display()),
        ));
    };
    let dir = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    if short.as_os_str().len() > MAX_PATH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the socket name in {} is too long", path.display()),
        ));
    }
    Ok(Address {
        addr: SocketAddrUnix::new(short)?,
        _dir: Some(dir),
    })
}

fn stream_socket() -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Connects to the socket at `path`, waiting at most `budget` (at least 1 ms) for a relay
/// that does not accept; the stream's reads and writes get the same timeout. A full backlog
/// past the budget is `WouldBlock`.
pub fn connect(path: &Path, budget: Duration) -> io::Result<UnixStream> {
    let address = address(path)?;
    let socket = stream_socket()?;
    let budget = Some(budget.max(Duration::from_millis(1)));
    sockopt::set_socket_timeout(&socket, sockopt::Timeout::Send, budget)?;
    sockopt::set_socket_timeout(&socket, sockopt::Timeout::Recv, budget)?;
    rustix::net::connect(&socket, &address.addr)?;
    Ok(UnixStream::from(socket))
}

/// Binds a listening socket at `path` (which must not exist).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    let address = address(path)?;
    let socket = stream_socket()?;
    rustix::net::bind(&socket, &address.addr)?;
    rustix::net::listen(&socket, BACKLOG)?;
    Ok(UnixListener::from(socket))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn a_path_longer_than_sun_path_binds_and_connects_in_its_own_directory() {
        let base = std::env::temp_dir().join(format!("sluice-socket-{}", std::process::id()));
        let deep = base.join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let path = deep.join("relay-0123abcd.sock");
        assert!(path.as_os_str().len() > MAX_PATH);
        let listener = bind(&path).unwrap();
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_socket());
        let mut client = connect(&path, Duration::from_millis(100)).unwrap();
        let (mut served, _) = listener.accept().unwrap();
        client.write_all(b"x").unwrap();
        let mut byte = [0; 1];
        served.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn a_connect_to_a_full_backlog_gives_up_within_its_budget() {
        let base = std::env::temp_dir().join(format!("sluice-backlog-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let path = base.join("full.sock");
        // Never accepted: the backlog fills, and a plain connect would block for ever.
        let _listener = bind(&path).unwrap();
        let mut held = Vec::new();
        let started = std::time::Instant::now();
        let error = loop {
            match connect(&path, Duration::from_millis(20)) {
                Ok(stream) => held.push(stream),
                Err(error) => break error,
            }
            assert!(held.len() < 10_000, "the backlog never filled");
        };
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock, "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&base);
    }
}
