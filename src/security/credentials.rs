//! A principal on disk: a credentials directory holding `principal.json`
//! (the secret key, the blessings and the trusted roots).
//!
//! The directory must belong to this user and be writable by no one else
//! (one that others can read is made 0700; one that others can write is
//! refused, with the `chmod` that fixes it). The file must belong to this
//! user, must not be a link and must not be writable by others (readable
//! by others: a warning, since its key may have been read). A new file is
//! written to a temporary file of a random name, created exclusively
//! without following links (mode 0600), then linked or renamed into place.
//!
//! Files written before roots had patterns list roots as bare keys; they
//! are read as trusting each root for its own root name and below, where
//! one of the principal's blessings tells that name, and rewritten (see
//! `docs/security.md`, "Credentials").

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use super::{Blessing, BlessingPattern, Principal, TrustedRoot, hex, own_names, unhex};
use crate::error::{Error, Result};

/// The credentials file inside a credentials directory.
pub const CREDENTIALS_FILE: &str = "principal.json";

/// A credentials file is small; past this it is not one.
const MAX_FILE: u64 = 1 << 20;

#[derive(Serialize, Deserialize)]
struct Stored {
    key: String,
    blessings: Vec<String>,
    roots: Vec<StoredRoot>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum StoredRoot {
    WithPattern {
        key: String,
        pattern: String,
    },
    /// The first format: a key trusted for every name.
    BareKey(String),
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Who may write, by mode bits: "group", "others", "group and others".
fn writers(mode: u32) -> &'static str {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "group and others",
        (true, false) => "its group",
        _ => "others",
    }
}

/// Checks (and if need be tightens) the credentials directory `dir`.
fn check_dir(dir: &Path) -> Result<()> {
    let md = std::fs::metadata(dir).map_err(|e| {
        Error::no_exist(format!("credentials directory {}: {e}", dir.display())).with_source(e)
    })?;
    if !md.is_dir() {
        return Err(Error::bad_arg(format!(
            "credentials directory {} is not a directory",
            dir.display()
        )));
    }
    if md.uid() != euid() {
        return Err(Error::no_access(format!(
            "credentials directory {} belongs to user {}, not to this user ({}): use a directory of your own (--credentials or WSPR_CREDENTIALS)",
            dir.display(),
            md.uid(),
            euid()
        )));
    }
    let mode = md.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Error::no_access(format!(
            "credentials directory {} is writable by {} (mode {mode:04o}): whoever can write there can replace the principal; run `chmod 700 {}` (and check that principal.json is yours)",
            dir.display(),
            writers(mode),
            dir.display()
        )));
    }
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o7700)).map_err(
            |e| {
                Error::no_access(format!(
                    "credentials directory {} is open to others (mode {mode:04o}) and cannot be made 0700: {e}; run `chmod 700 {}`",
                    dir.display(),
                    dir.display()
                ))
                .with_source(e)
            },
        )?;
        log::info!(
            "credentials directory {} was open to others (mode {mode:04o}): made it {:04o}",
            dir.display(),
            mode & 0o7700
        );
    }
    Ok(())
}

/// Creates `dir` (mode 0700) if it is missing, then checks it.
fn ensure_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                Error::no_access(format!("credentials directory {}: {e}", dir.display()))
                    .with_source(e)
            })?;
    }
    check_dir(dir)
}

/// Opens the credentials file without following a link; `None` when there
/// is none.
fn open_file(path: &Path) -> Result<Option<File>> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path);
    match f {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        // O_NOFOLLOW on a link: ELOOP.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            Err(Error::no_access(format!(
                "credentials {} is a symbolic link: wspr does not follow links there; put the file itself in its place",
                path.display()
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            Err(Error::no_access(format!("credentials {}: {e}", path.display())).with_source(e))
        }
        Err(e) => {
            Err(Error::bad_arg(format!("credentials {}: {e}", path.display())).with_source(e))
        }
    }
}

/// Checks the opened file's kind, owner and mode.
fn check_file(f: &File, path: &Path) -> Result<()> {
    let md = f.metadata().map_err(|e| {
        Error::bad_arg(format!("credentials {}: {e}", path.display())).with_source(e)
    })?;
    if !md.is_file() {
        return Err(Error::bad_arg(format!(
            "credentials {} is not a regular file",
            path.display()
        )));
    }
    if md.uid() != euid() {
        return Err(Error::no_access(format!(
            "credentials {} belongs to user {}, not to this user ({}): use credentials of your own",
            path.display(),
            md.uid(),
            euid()
        )));
    }
    let mode = md.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Error::no_access(format!(
            "credentials {} is writable by {} (mode {mode:04o}): whoever can write it can replace the principal; run `chmod 600 {}`",
            path.display(),
            writers(mode),
            path.display()
        )));
    }
    if mode & 0o044 != 0 {
        log::warn!(
            "credentials {} is readable by others (mode {mode:04o}): its secret key may have been read; run `chmod 600 {}`, and consider a new principal",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

fn corrupt(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::bad_arg(format!(
        "credentials {} cannot be read: {why}; restore it, or move it away to start a new principal",
        path.display()
    ))
}

/// A fresh, unguessable temporary name in `dir`.
fn temp_name(dir: &Path) -> Result<PathBuf> {
    let mut r = [0u8; 12];
    getrandom::fill(&mut r).map_err(|e| Error::internal(format!("no randomness: {e}")))?;
    Ok(dir.join(format!(".{CREDENTIALS_FILE}.{}.tmp", hex(&r))))
}

/// Makes what was written to `dir` durable (the directory's entries).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Principal {
    /// The credentials directory to use: `WSPR_CREDENTIALS`, else
    /// `$XDG_CONFIG_HOME/wspr/credentials`, else
    /// `$HOME/.config/wspr/credentials`.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("WSPR_CREDENTIALS").filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("wspr").join("credentials")
    }

    /// Loads the principal in `dir`: `NoExist` if there is none, `BadArg`
    /// if the file is not one, `NoAccess` if the directory or the file is
    /// not safe to use.
    pub fn load(dir: &Path) -> Result<Principal> {
        check_dir(dir)?;
        let path = dir.join(CREDENTIALS_FILE);
        match open_file(&path)? {
            Some(f) => Principal::read(f, dir, &path),
            None => Err(Error::no_exist(format!(
                "no credentials in {} (no {CREDENTIALS_FILE})",
                dir.display()
            ))),
        }
    }

    fn read(f: File, dir: &Path, path: &Path) -> Result<Principal> {
        check_file(&f, path)?;
        let mut bytes = Vec::new();
        f.take(MAX_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| corrupt(path, &e).with_source(e))?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(corrupt(path, format!("over {MAX_FILE} bytes")));
        }
        let stored: Stored =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(path, &e).with_source(e))?;
        let seed: [u8; 32] = unhex(&stored.key)
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| corrupt(path, "the key is not 32 bytes of hex"))?;
        let mut p = Principal {
            key: SigningKey::from_bytes(&seed),
            blessings: vec![],
            roots: vec![],
        };
        for (i, b) in stored.blessings.iter().enumerate().rev() {
            let b = Blessing::from_hex(b)
                .and_then(|b| p.add_blessing(b))
                .map_err(|e| corrupt(path, format!("blessing {i}: {}", e.msg())));
            b?;
        }
        let mut migrated = false;
        for r in &stored.roots {
            match r {
                StoredRoot::WithPattern { key, pattern } => {
                    let key = root_key(key).ok_or_else(|| corrupt(path, "a root is not a key"))?;
                    let pattern = BlessingPattern::new(pattern)
                        .map_err(|e| corrupt(path, format!("a root's pattern: {}", e.msg())))?;
                    p.trust(key, pattern);
                }
                StoredRoot::BareKey(key) => {
                    let key = root_key(key).ok_or_else(|| corrupt(path, "a root is not a key"))?;
                    p.migrate_root(key, dir);
                    migrated = true;
                }
            }
        }
        if migrated {
            match p.save(dir) {
                Ok(()) => log::info!(
                    "credentials {}: rewritten with each root trusted for its own names",
                    path.display()
                ),
                Err(e) => log::warn!(
                    "credentials {}: roots read as trusted for their own names, but the file could not be rewritten: {e}",
                    path.display()
                ),
            }
        }
        Ok(p)
    }

    /// Takes a root of the first format (a key trusted for every name):
    /// trusted now for `<name>/...` for each root name that one of this
    /// principal's blessings gives it; dropped, with a warning, when none
    /// does.
    fn migrate_root(&mut self, key: [u8; 32], dir: &Path) {
        let patterns: Vec<BlessingPattern> = self
            .blessings
            .iter()
            .filter(|b| b.root_key() == key)
            .filter_map(|b| own_names(b).ok())
            .collect();
        if patterns.is_empty() {
            log::warn!(
                "credentials in {}: root {} was trusted for every name, and no blessing here tells its own name: it is no longer trusted. To trust it again for its names, run `wsprd principal trust --credentials {} --from <the credentials directory of that principal>`",
                dir.display(),
                hex(&key),
                dir.display()
            );
        }
        for p in patterns {
            log::info!(
                "credentials in {}: root {} (trusted for every name before) now trusted for {p}",
                dir.display(),
                hex(&key)
            );
            self.roots.retain(|r| !(r.key == key && r.pattern == p));
            self.roots.push(TrustedRoot { key, pattern: p });
        }
    }

    /// Writes the principal to `dir` (created with mode 0700; the file
    /// with mode 0600), replacing what is there.
    pub fn save(&self, dir: &Path) -> Result<()> {
        ensure_dir(dir)?;
        let tmp = self.write_temp(dir)?;
        let renamed = std::fs::rename(&tmp, dir.join(CREDENTIALS_FILE));
        if renamed.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        renamed.map_err(|e| {
            Error::internal(format!("credentials {}: {e}", dir.display())).with_source(e)
        })?;
        sync_dir(dir);
        Ok(())
    }

    /// Writes the principal to a new temporary file in `dir` (created
    /// exclusively, never through a link); its path.
    fn write_temp(&self, dir: &Path) -> Result<PathBuf> {
        let stored = Stored {
            key: hex(self.key.as_bytes()),
            blessings: self.blessings.iter().map(Blessing::to_hex).collect(),
            roots: self
                .roots
                .iter()
                .map(|r| StoredRoot::WithPattern {
                    key: hex(&r.key),
                    pattern: r.pattern.as_str().to_string(),
                })
                .collect(),
        };
        let text = serde_json::to_string_pretty(&stored)
            .map_err(|e| Error::internal(format!("encoding credentials: {e}")))?;
        let tmp = temp_name(dir)?;
        let io = |e: io::Error| {
            Error::internal(format!("credentials {}: {e}", tmp.display())).with_source(e)
        };
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&tmp)
            .map_err(io)?;
        let written = f.write_all(text.as_bytes()).and_then(|_| f.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        Ok(tmp)
    }

    /// Loads the principal in `dir`, or creates one self-blessed as `name`
    /// if there is none (safe when several processes start at once).
    pub fn load_or_create(dir: &Path, name: &str) -> Result<Principal> {
        ensure_dir(dir)?;
        let path = dir.join(CREDENTIALS_FILE);
        if let Some(f) = open_file(&path)? {
            return Principal::read(f, dir, &path);
        }
        let p = Principal::new_self_blessed(name)?;
        let tmp = p.write_temp(dir)?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(dir);
                log::info!("created credentials in {} for {name}", dir.display());
                Ok(p)
            }
            // Another process created it first.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Principal::load(dir),
            Err(e) => {
                Err(Error::internal(format!("credentials {}: {e}", path.display())).with_source(e))
            }
        }
    }
}

fn root_key(hex_key: &str) -> Option<[u8; 32]> {
    unhex(hex_key).and_then(|k| k.try_into().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ids;

    /// A fresh directory for one test (removed when dropped).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let d = std::env::temp_dir().join(format!("wspr-cred-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            TempDir(d)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn chmod(p: &Path, m: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    #[test]
    fn created_private_and_read_back() {
        let t = TempDir::new("create");
        let dir = &t.0;
        let p = Principal::load_or_create(dir, "alice").unwrap();
        let again = Principal::load_or_create(dir, "ignored").unwrap();
        assert_eq!(p.public_key(), again.public_key());
        assert_eq!(again.names(), vec!["alice"]);
        assert_eq!(again.roots(), p.roots());
        assert_eq!(mode(&dir.join(CREDENTIALS_FILE)), 0o600);
        assert_eq!(mode(dir), 0o700);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![CREDENTIALS_FILE]);
    }

    #[test]
    fn a_directory_others_can_write_is_refused_with_the_fix() {
        let t = TempDir::new("dirw");
        let dir = &t.0;
        Principal::load_or_create(dir, "alice").unwrap();
        for m in [0o770, 0o707, 0o777] {
            chmod(dir, m);
            for e in [
                Principal::load(dir).unwrap_err(),
                Principal::load_or_create(dir, "alice").unwrap_err(),
            ] {
                assert_eq!(e.id(), ids::NO_ACCESS, "{e}");
                assert!(e.msg().contains(&dir.display().to_string()), "{e}");
                assert!(
                    e.msg().contains(&format!("chmod 700 {}", dir.display())),
                    "{e}"
                );
            }
            // Nothing was written meanwhile: the mode is as the user left it.
            assert_eq!(mode(dir), m);
        }
        // One that others can only read is made private.
        chmod(dir, 0o755);
        Principal::load(dir).unwrap();
        assert_eq!(mode(dir), 0o700);
    }

    /// Another user's directory or file is refused. (Making one takes
    /// root: where the tests run as root, as CI does, this runs; elsewhere
    /// it says so and checks nothing.)
    #[test]
    fn another_users_credentials_are_refused() {
        if euid() != 0 {
            eprintln!("not root: cannot give a file to another user; skipped");
            return;
        }
        let t = TempDir::new("owner");
        let dir = &t.0;
        Principal::load_or_create(dir, "alice").unwrap();
        let file = dir.join(CREDENTIALS_FILE);
        std::os::unix::fs::chown(&file, Some(65534), None).unwrap();
        let e = Principal::load(dir).unwrap_err();
        assert_eq!(e.id(), ids::NO_ACCESS, "{e}");
        assert!(e.msg().contains("belongs to user 65534"), "{e}");
        std::os::unix::fs::chown(&file, Some(0), None).unwrap();
        std::os::unix::fs::chown(dir, Some(65534), None).unwrap();
        let e = Principal::load(dir).unwrap_err();
        assert_eq!(e.id(), ids::NO_ACCESS, "{e}");
        assert!(e.msg().contains("belongs to user 65534"), "{e}");
    }

    #[test]
    fn a_file_others_can_write_is_refused_one_they_can_read_is_used() {
        let t = TempDir::new("filew");
        let dir = &t.0;
        let p = Principal::load_or_create(dir, "alice").unwrap();
        let file = dir.join(CREDENTIALS_FILE);
        for m in [0o620, 0o602, 0o666] {
            chmod(&file, m);
            let e = Principal::load(dir).unwrap_err();
            assert_eq!(e.id(), ids::NO_ACCESS, "{e}");
            assert!(
                e.msg().contains(&format!("chmod 600 {}", file.display())),
                "{e}"
            );
        }
        chmod(&file, 0o644);
        assert_eq!(Principal::load(dir).unwrap().public_key(), p.public_key());
    }

    #[test]
    fn a_link_in_place_of_the_file_is_not_followed() {
        let t = TempDir::new("link");
        let dir = &t.0;
        let elsewhere = TempDir::new("link-target");
        Principal::load_or_create(&elsewhere.0, "someone").unwrap();
        std::fs::DirBuilder::new().mode(0o700).create(dir).unwrap();
        std::os::unix::fs::symlink(
            elsewhere.0.join(CREDENTIALS_FILE),
            dir.join(CREDENTIALS_FILE),
        )
        .unwrap();
        for e in [
            Principal::load(dir).unwrap_err(),
            Principal::load_or_create(dir, "alice").unwrap_err(),
        ] {
            assert_eq!(e.id(), ids::NO_ACCESS, "{e}");
            assert!(e.msg().contains("symbolic link"), "{e}");
        }
    }

    /// Links planted where an earlier version wrote its temporary file
    /// (`.principal.json.<pid>.<n>`, opened with create and truncate),
    /// pointing at a file of the victim's: saving neither follows them nor
    /// touches their target.
    #[test]
    fn planted_temporary_files_and_links_are_not_written_through() {
        let t = TempDir::new("plant");
        let dir = &t.0;
        let p = Principal::load_or_create(dir, "alice").unwrap();
        let victim = TempDir::new("plant-victim");
        std::fs::create_dir_all(&victim.0).unwrap();
        let target = victim.0.join("precious");
        std::fs::write(&target, b"precious").unwrap();
        let pid = std::process::id();
        for n in 0..256 {
            let planted = dir.join(format!(".{CREDENTIALS_FILE}.{pid}.{n}"));
            std::os::unix::fs::symlink(&target, &planted).unwrap();
        }
        p.save(dir).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        assert_eq!(Principal::load(dir).unwrap().public_key(), p.public_key());
        // And a temporary name is never reused: two saves, two names, none
        // left behind.
        let before = std::fs::read_dir(dir).unwrap().count();
        p.save(dir).unwrap();
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), before);
    }

    #[test]
    fn a_corrupt_file_is_bad_arg_naming_it() {
        let t = TempDir::new("corrupt");
        let dir = &t.0;
        Principal::load_or_create(dir, "alice").unwrap();
        let file = dir.join(CREDENTIALS_FILE);
        let good = std::fs::read_to_string(&file).unwrap();
        let bad_blessing =
            good.replacen("\"blessings\": [\n    \"", "\"blessings\": [\n    \"00", 1);
        for garbage in [
            b"\xff\xfe\x00garbage".to_vec(),
            b"".to_vec(),
            b"{}".to_vec(),
            br#"{"key": "zz", "blessings": [], "roots": []}"#.to_vec(),
            bad_blessing.into_bytes(),
        ] {
            std::fs::write(&file, &garbage).unwrap();
            chmod(&file, 0o600);
            for e in [
                Principal::load(dir).unwrap_err(),
                Principal::load_or_create(dir, "alice").unwrap_err(),
            ] {
                assert_eq!(e.id(), ids::BAD_ARG, "{e}");
                assert!(e.msg().contains(&file.display().to_string()), "{e}");
            }
        }
    }

    /// A file of the first format (roots as bare keys) is read with each
    /// root trusted for its own names, and rewritten so.
    #[test]
    fn roots_of_the_first_format_are_migrated() {
        let t = TempDir::new("migrate");
        let dir = &t.0;
        let alice = Principal::new_self_blessed("alice").unwrap();
        let mut bob = Principal::new_self_blessed("bob").unwrap();
        bob.add_blessing(alice.bless(&bob.public_key(), "bob", vec![]).unwrap())
            .unwrap();
        let stranger = Principal::new_self_blessed("carol").unwrap();
        let old = serde_json::json!({
            "key": hex(bob.key.as_bytes()),
            "blessings": bob.blessings().iter().map(Blessing::to_hex).collect::<Vec<_>>(),
            "roots": [hex(&bob.public_key()), hex(&alice.public_key()), hex(&stranger.public_key())],
        });
        std::fs::DirBuilder::new().mode(0o700).create(dir).unwrap();
        let file = dir.join(CREDENTIALS_FILE);
        std::fs::write(&file, old.to_string()).unwrap();
        chmod(&file, 0o600);
        let p = Principal::load(dir).unwrap();
        let roots: Vec<_> = p
            .roots()
            .iter()
            .map(|r| (r.key, r.pattern.as_str().to_string()))
            .collect();
        assert_eq!(
            roots,
            vec![
                (bob.public_key(), "bob/...".to_string()),
                (alice.public_key(), "alice/...".to_string()),
            ],
            "the stranger's root, whose name nothing tells, is dropped"
        );
        // Alice's root no longer vouches for names outside alice/...
        let forged = alice.bless_self("bob").unwrap();
        assert!(!p.recognizes(&forged));
        // Rewritten in the new format.
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("\"pattern\": \"alice/...\""), "{text}");
        assert_eq!(Principal::load(dir).unwrap().roots(), p.roots());
        assert_eq!(mode(&file), 0o600);
    }
}
