//! Where a mount table keeps its permissions between runs: one file,
//! `permissions.json`, in its state directory, replaced atomically (a new
//! file made with an unpredictable name and exclusive create, written,
//! synced, renamed over the old one, and the directory synced).
//!
//! Writes happen on one thread per table (`wspr-mt-store`), never under
//! the table's lock: a change marks the table dirty and queues the
//! caller's reply; the thread takes a snapshot under the lock, writes it
//! without the lock, then answers every reply queued meanwhile (one write
//! for a burst of changes). A mount that made a name is answered once the
//! name's owner is on disk.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Weak};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rpc::Reply;
use crate::sync::lock;

use super::tree::StoredNode;

/// The file in the state directory.
pub const PERMISSIONS_FILE: &str = "permissions.json";
/// What the file says it is.
const FORMAT: &str = "wspr mount table permissions v1";

#[derive(Serialize, Deserialize)]
struct File {
    format: String,
    nodes: Vec<StoredNode>,
}

/// Refuses the state directory or file `path` (`md`, its metadata) when
/// it is another user's, or its group or others may write it: whoever
/// can write the state gives itself any name at the next start.
fn check_private(md: &std::fs::Metadata, path: &Path, what: &str, fix: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    if md.uid() != me {
        return Err(Error::no_access(format!(
            "mount table {what} {} belongs to user {}, not to this user ({me}): use one of your own",
            path.display(),
            md.uid()
        )));
    }
    let mode = md.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Error::no_access(format!(
            "mount table {what} {} is writable by others (mode {mode:04o}): whoever can write it can take any name at the next start; run `{fix} {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// Reads the permissions in `dir` (created, mode 0700, if missing); none
/// if there is no file yet. A file that cannot be read is an error: a
/// table that forgot who owns its names would hand them to anyone; so is
/// a directory or a file that another user owns or others may write (or
/// a link in the file's place).
pub(super) fn load(dir: &Path) -> Result<Vec<StoredNode>> {
    use std::io::Read;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io = |e: std::io::Error| {
        Error::internal(format!("state directory {}: {e}", dir.display())).with_source(e)
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    check_private(
        &std::fs::metadata(dir).map_err(io)?,
        dir,
        "state directory",
        "chmod 700",
    )?;
    let path = dir.join(PERMISSIONS_FILE);
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path);
    let mut f = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err(Error::no_access(format!(
                "{} is a symbolic link: the mount table does not follow links there",
                path.display()
            )));
        }
        Err(e) => return Err(io(e)),
    };
    let md = f.metadata().map_err(io)?;
    if !md.is_file() {
        return Err(Error::internal(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    check_private(&md, &path, "state", "chmod 600")?;
    let mut text = String::new();
    f.read_to_string(&mut text).map_err(io)?;
    let file: File = serde_json::from_str(&text).map_err(|e| {
        Error::internal(format!(
            "{}: {e}; the mount table will not start without knowing who owns its names (restore the file, or remove it to start empty)",
            path.display()
        ))
    })?;
    if file.format != FORMAT {
        return Err(Error::internal(format!(
            "{}: format {:?}, expected {FORMAT:?}",
            path.display(),
            file.format
        )));
    }
    Ok(file.nodes)
}

/// Writes `nodes` to `dir` atomically.
pub(super) fn save(dir: &Path, nodes: Vec<StoredNode>) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |what: &str, e: std::io::Error| {
        Error::internal(format!(
            "saving permissions in {}: {what}: {e}",
            dir.display()
        ))
        .with_source(e)
    };
    let text = serde_json::to_vec_pretty(&File {
        format: FORMAT.to_string(),
        nodes,
    })
    .map_err(|e| Error::internal(format!("encoding permissions: {e}")))?;
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(|e| Error::internal(format!("no randomness: {e}")))?;
    let tmp = dir.join(format!(
        ".{PERMISSIONS_FILE}.{}",
        crate::security::hex(&suffix)
    ));
    // Exclusive create: never an existing file, nor a link planted there.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("creating a temporary file", e))?;
    let written = f
        .write_all(&text)
        .and_then(|_| f.sync_all())
        .map_err(|e| io("writing", e))
        .and_then(|_| {
            std::fs::rename(&tmp, dir.join(PERMISSIONS_FILE)).map_err(|e| io("renaming", e))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    // The rename itself, durable.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("syncing the directory", e))
}

/// Something that can be snapshotted for the store.
pub(super) trait Source: Send + Sync + 'static {
    /// The permissions to write now.
    fn snapshot(&self) -> Vec<StoredNode>;
}

/// What the store thread is asked: write, then answer this reply (if any).
type Job = Option<Reply>;

/// The store thread of one table. Dropping it ends the thread (joined,
/// unless it is the thread itself that drops it).
pub(super) struct Store {
    dir: PathBuf,
    tx: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Store {
    /// Starts the thread that writes `source`'s permissions to `dir`.
    pub(super) fn start<S: Source>(dir: PathBuf, source: Weak<S>) -> Result<Store> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let d = dir.clone();
        let h = crate::sync::spawn("wspr-mt-store".into(), 256 * 1024, move || {
            run(d, source, rx)
        })
        .map_err(Error::thread_failed)?;
        Ok(Store {
            dir,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(h)),
        })
    }

    /// The state directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Asks for a write; `reply` (if any) is answered once it is done.
    pub(super) fn write(&self, reply: Job) {
        let tx = lock(&self.tx).clone();
        match tx {
            Some(tx) => {
                // (Fails only if the thread is gone: the reply, dropped,
                // answers Aborted.)
                let _ = tx.send(reply);
            }
            None => drop(reply),
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        lock(&self.tx).take();
        let h = lock(&self.thread).take();
        if let Some(h) = h
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
    }
}

fn run<S: Source>(dir: PathBuf, source: Weak<S>, rx: Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut replies: Vec<Reply> = first.into_iter().collect();
        replies.extend(rx.try_iter().flatten());
        let Some(src) = source.upgrade() else {
            // The table is gone: the replies, dropped, answer Aborted.
            return;
        };
        let nodes = src.snapshot();
        drop(src);
        let saved = save(&dir, nodes);
        if let Err(e) = &saved {
            log::error!("{e}");
        }
        for r in replies {
            r.send(saved.clone().map(|_| vec![]).map_err(|e| {
                Error::internal(format!(
                    "the change is made but not saved, and would not survive a restart: {}",
                    e.msg()
                ))
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whoever can write the state could give itself any name at the
    /// next start: a directory or a file others can write, or another
    /// user's, is refused, naming it and the fix; a private one is used.
    #[test]
    fn a_state_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let chmod = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        let dir = std::env::temp_dir().join(format!("wspr-mt-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(load(&dir).unwrap().is_empty());
        save(&dir, vec![]).unwrap();
        for m in [0o777, 0o770, 0o703] {
            chmod(&dir, m);
            let e = load(&dir).unwrap_err();
            assert_eq!(e.id(), crate::error::ids::NO_ACCESS, "{e}");
            assert!(
                e.msg().contains(&format!("chmod 700 {}", dir.display())),
                "{e}"
            );
        }
        chmod(&dir, 0o755);
        assert!(load(&dir).unwrap().is_empty(), "readable by others: fine");
        let file = dir.join(PERMISSIONS_FILE);
        for m in [0o666, 0o620] {
            chmod(&file, m);
            let e = load(&dir).unwrap_err();
            assert_eq!(e.id(), crate::error::ids::NO_ACCESS, "{e}");
            assert!(
                e.msg().contains(&format!("chmod 600 {}", file.display())),
                "{e}"
            );
        }
        chmod(&file, 0o644);
        assert!(load(&dir).unwrap().is_empty());
        // A link in the file's place is not followed.
        let elsewhere = dir.with_extension("elsewhere");
        std::fs::write(&elsewhere, "{}").unwrap();
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
        let e = load(&dir).unwrap_err();
        assert_eq!(e.id(), crate::error::ids::NO_ACCESS, "{e}");
        let _ = std::fs::remove_file(&elsewhere);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn save_load_and_refuse_a_corrupt_file() {
        let dir = std::env::temp_dir().join(format!("wspr-mt-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(load(&dir).unwrap().is_empty(), "a new directory");
        let node: StoredNode = serde_json::from_value(serde_json::json!({
            "name": "a/b", "permissions": {"Admin": ["alice"]}, "version": 3, "creator": "alice"
        }))
        .unwrap();
        save(&dir, vec![node]).unwrap();
        let back = load(&dir).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].name, "a/b");
        assert_eq!(back[0].owned.version, 3);
        // No temporary file is left behind.
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(files.len(), 1, "{files:?}");
        use std::os::unix::fs::PermissionsExt;
        let mode = files[0].metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(dir.join(PERMISSIONS_FILE), "{not json").unwrap();
        let e = load(&dir).unwrap_err();
        assert!(e.msg().contains("who owns"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
