//! The state directory (`--state-dir`): the journal store on one machine's disk.
//!
//! Layout:
//!
//! ```text
//! cutovers/<id>/journal.jsonl   the intent log of one cutover, one JSON record per line
//! cutovers/<id>/plan.toml       the plan it started with (resume and rollback follow it)
//! targets/<key>.latest          the id of the latest cutover of a listener or rule
//! targets/<key>.lock            held (flock) by the process driving that listener's cutover
//! ```
//!
//! A record is one line written with a single `write` on a file opened with `O_APPEND`,
//! then `fsync`'d: concurrent writers never interleave within a line, and a reader leaves
//! a last line without its newline (a write in progress, or torn by a crash) for later.
//!
//! The append (its write and its `fsync`) runs on tokio's blocking pool, never on a runtime
//! worker: an `fsync` takes milliseconds, and a daemon with 500 cutovers appending their
//! verdicts at one tick (15 each with 1-second periods and 15-second polls) blocked both
//! workers for seconds with them, so an operator's rollback waited that long to be scheduled.
//! On the pool the fsyncs of many journals also run at once, and the file system commits them
//! together.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;

use super::{Cursor, Fence, JournalError, Lease, LeaseHolder, LeaseInfo, Record, Store, new_id, record};
use crate::saga::Event;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |cause| JournalError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// A test hook for crash testing: with `CUTOVER_TEST_CRASH_AFTER=TEXT`, the process aborts
/// (as abruptly as SIGKILL: no destructor, no signal handler) right after it durably wrote a
/// journal line containing `TEXT` (or, for `latest ID`, after updating a latest-cutover index).
/// It lets the integration tests kill a run at an exact point of its journal, which a signal
/// sent from outside cannot do.
fn crash_point(written: &[u8]) {
    static AFTER: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let after = AFTER.get_or_init(|| std::env::var("CUTOVER_TEST_CRASH_AFTER").ok().filter(|s| !s.is_empty()));
    if let Some(pattern) = after
        && String::from_utf8_lossy(written).contains(pattern.as_str())
    {
        eprintln!("CUTOVER_TEST_CRASH_AFTER: crashing after {pattern:?}");
        std::process::abort();
    }
}

/// Appends whole lines to journal `id` at `path`, durably (see the module doc).
fn write_line(id: &str, path: &Path, line: &[u8]) -> Result<(), JournalError> {
    let file = match OpenOptions::new().append(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(JournalError::NotFound(id.to_string())),
        Err(e) => return Err(io_err(path)(e)),
    };
    // One write call for the lines: with O_APPEND, concurrent writers never interleave within it.
    (&file).write_all(line).map_err(io_err(path))?;
    file.sync_data().map_err(io_err(path))?;
    crash_point(line);
    Ok(())
}

/// Creates a directory (and its parents) readable by its owner only.
fn private_dir(path: &Path) -> Result<(), JournalError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_err(path))
}

/// Creates (truncating) a file readable by its owner only.
fn private_file(path: &Path) -> Result<File, JournalError> {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))
}

/// The local lease: an exclusive `flock` on the target's lock file, held until the file is
/// closed (dropped, or the process dies).
struct FileLock(#[allow(dead_code, reason = "held for the lock it carries")] File);

impl LeaseHolder for FileLock {
    fn held_for(&self, _margin: std::time::Duration) -> bool {
        true
    }
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens (creating) a state directory. What it creates is its owner's only (directories
    /// 0700, files 0600): journals hold the variables of every cutover.
    pub fn open(root: &Path) -> Result<StateDir, JournalError> {
        for sub in ["cutovers", "targets"] {
            let p = root.join(sub);
            private_dir(&p)?;
        }
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file-name-safe key for a listener or rule ARN.
    fn key(target_arn: &str) -> String {
        target_arn
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .collect()
    }

    fn target_file(&self, target_arn: &str, suffix: &str) -> PathBuf {
        self.root
            .join("targets")
            .join(format!("{}.{suffix}", Self::key(target_arn)))
    }

    /// Where a cutover's journal lives.
    pub fn journal_path(&self, id: &str) -> PathBuf {
        self.root.join("cutovers").join(id).join("journal.jsonl")
    }

    fn plan_path(&self, id: &str) -> PathBuf {
        self.root.join("cutovers").join(id).join("plan.toml")
    }

    /// Creates the (empty) journal of a new cutover with the given id.
    pub fn create_with_id(&self, id: &str) -> Result<(), JournalError> {
        let dir = self.root.join("cutovers").join(id);
        private_dir(&dir)?;
        let path = self.journal_path(id);
        OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        File::open(&dir).and_then(|d| d.sync_all()).map_err(io_err(&dir))
    }

    fn save_plan(&self, id: &str, text: &str) -> Result<(), JournalError> {
        let path = self.plan_path(id);
        let mut f = private_file(&path)?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(io_err(&path))
    }

    fn create_new(&self, plan_text: &str) -> Result<String, JournalError> {
        let mut last = None;
        for _ in 0..5 {
            let id = new_id();
            match self.create_with_id(&id) {
                Ok(()) => {
                    self.save_plan(&id, plan_text)?;
                    return Ok(id);
                }
                Err(JournalError::Io { cause, path }) if cause.kind() == io::ErrorKind::AlreadyExists => {
                    last = Some(JournalError::Io { cause, path });
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    async fn append_now(&self, id: &str, event: &Event) -> Result<Record, JournalError> {
        let mut records = self.append_all_now(id, std::slice::from_ref(event)).await?;
        Ok(records.remove(0))
    }

    /// Appends `events` as lines of one write, then one `fsync`.
    async fn append_all_now(&self, id: &str, events: &[Event]) -> Result<Vec<Record>, JournalError> {
        let path = self.journal_path(id);
        let records: Vec<Record> = events.iter().map(record).collect();
        let mut line = vec![];
        for r in &records {
            serde_json::to_writer(&mut line, r).expect("journal records serialize");
            line.push(b'\n');
        }
        let id = id.to_string();
        // On the blocking pool (see the module doc); a pool gone (the runtime shutting down)
        // is an append that did not happen.
        tokio::task::spawn_blocking(move || write_line(&id, &path, &line))
            .await
            .map_err(|e| JournalError::Store(format!("appending to the journal: {e}")))??;
        Ok(records)
    }

    fn read_now(&self, id: &str, from: Cursor) -> Result<(Vec<Record>, Cursor), JournalError> {
        let path = self.journal_path(id);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(JournalError::NotFound(id.to_string())),
            Err(e) => return Err(io_err(&path)(e)),
        };
        f.seek(SeekFrom::Start(from.offset)).map_err(io_err(&path))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(io_err(&path))?;
        let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let mut records = Vec::new();
        let mut seq = from.seq;
        for raw in buf[..complete].split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            seq += 1;
            let record = serde_json::from_slice(raw).map_err(|e| JournalError::Corrupt {
                path: path.clone(),
                line: seq as usize,
                message: e.to_string(),
            })?;
            records.push(record);
        }
        Ok((
            records,
            Cursor {
                seq,
                offset: from.offset + complete as u64,
            },
        ))
    }

    fn latest_now(&self, target_arn: &str) -> Result<Option<String>, JournalError> {
        let path = self.target_file(target_arn, "latest");
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Records `id` as the latest cutover of a target atomically: write, fsync, rename.
    fn set_latest_now(&self, target_arn: &str, id: &str) -> Result<(), JournalError> {
        let dir = self.root.join("targets");
        let path = self.target_file(target_arn, "latest");
        let tmp = self.target_file(target_arn, "latest.tmp");
        let mut f = private_file(&tmp)?;
        f.write_all(id.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        File::open(&dir).and_then(|d| d.sync_all()).map_err(io_err(&dir))?;
        crash_point(format!("latest {id}").as_bytes());
        Ok(())
    }

    fn try_lock_now(&self, target_arn: &str, owner: &str) -> Result<Option<Lease>, JournalError> {
        let path = self.target_file(target_arn, "lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        match file.try_lock() {
            Ok(()) => {
                // Who holds it, for `status` (the lock itself is the lease: it lasts as long as
                // this process).
                file.set_len(0)
                    .and_then(|_| file.write_all(owner.as_bytes()))
                    .map_err(io_err(&path))?;
                Ok(Some(Lease::new(target_arn, 0, Box::new(FileLock(file)))))
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(io_err(&path)(e)),
        }
    }

    /// Who holds a target's lock, read without taking it: the owner written into the lock file,
    /// and whether the kernel shows the file locked (`/proc/locks`).
    fn lease_now(&self, target_arn: &str) -> Result<Option<LeaseInfo>, JournalError> {
        use std::os::unix::fs::MetadataExt;
        let path = self.target_file(target_arn, "lock");
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let owner = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let dev = meta.dev();
        // Linux's encoding of st_dev; /proc/locks prints MAJOR:MINOR:INODE, the first two in hex.
        let (major, minor) = (
            ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
            (dev & 0xff) | ((dev >> 12) & !0xff),
        );
        let id = format!("{major:02x}:{minor:02x}:{}", meta.ino());
        let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
        let held = locks
            .lines()
            .any(|l| l.contains("FLOCK") && l.split_whitespace().any(|f| f == id));
        Ok(Some(LeaseInfo {
            owner: owner.trim().to_string(),
            token: 0,
            expires_at: None,
            held,
        }))
    }

    fn ids_now(&self) -> Result<Vec<String>, JournalError> {
        let dir = self.root.join("cutovers");
        let mut ids: Vec<String> = std::fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

impl Store for StateDir {
    fn create<'a>(&'a self, plan_text: &'a str) -> BoxFuture<'a, Result<String, JournalError>> {
        Box::pin(async move { self.create_new(plan_text) })
    }

    // The flock is held by the owner for its whole life, so its appends need no token.
    fn append<'a>(
        &'a self,
        id: &'a str,
        event: &'a Event,
        _fence: Option<&'a Fence>,
    ) -> BoxFuture<'a, Result<Record, JournalError>> {
        Box::pin(self.append_now(id, event))
    }

    fn append_all<'a>(
        &'a self,
        id: &'a str,
        events: &'a [Event],
        _fence: Option<&'a Fence>,
    ) -> BoxFuture<'a, Result<Vec<Record>, JournalError>> {
        Box::pin(self.append_all_now(id, events))
    }

    fn read<'a>(&'a self, id: &'a str, from: Cursor) -> BoxFuture<'a, Result<(Vec<Record>, Cursor), JournalError>> {
        Box::pin(async move { self.read_now(id, from) })
    }

    fn saved_plan<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<String>, JournalError>> {
        Box::pin(async move {
            let path = self.plan_path(id);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_err(&path)(e)),
            }
        })
    }

    fn latest<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<Option<String>, JournalError>> {
        Box::pin(async move { self.latest_now(target) })
    }

    fn set_latest<'a>(&'a self, target: &'a str, id: &'a str) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async move { self.set_latest_now(target, id) })
    }

    fn try_lock<'a>(&'a self, target: &'a str, owner: &'a str) -> BoxFuture<'a, Result<Option<Lease>, JournalError>> {
        Box::pin(async move { self.try_lock_now(target, owner) })
    }

    fn lease<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>, JournalError>> {
        Box::pin(async move { self.lease_now(target) })
    }

    fn ids(&self) -> BoxFuture<'_, Result<Vec<String>, JournalError>> {
        Box::pin(async move { self.ids_now() })
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async move {
            // An id is a directory name of `cutovers/`, never a path.
            if id.is_empty() || id.contains('/') || id.starts_with('.') {
                return Err(JournalError::NotFound(id.to_string()));
            }
            let dir = self.root.join("cutovers").join(id);
            std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
            let parent = self.root.join("cutovers");
            File::open(&parent).and_then(|d| d.sync_all()).map_err(io_err(&parent))
        })
    }

    fn describe(&self) -> String {
        format!("state directory {}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Journal, Store};
    use crate::saga::Trigger;
    use std::sync::Arc;

    #[tokio::test]
    async fn appended_records_read_back_in_order_across_writers() {
        let dir = tempfile::tempdir().unwrap();
        let state: Arc<dyn Store> = Arc::new(StateDir::open(dir.path()).unwrap());
        let id = state.create("plan").await.unwrap();
        let a = Journal::new(state.clone(), &id);
        let b = Journal::new(state.clone(), &id);
        let mut reader = a.reader();
        a.append(&Event::StepStarted { step: 0 }).await.unwrap();
        b.append(&Event::RollbackRequested {
            trigger: Trigger::Operator,
            reason: "r".into(),
            by: "me".into(),
        })
        .await
        .unwrap();
        let got: Vec<Event> = reader.read_new().await.unwrap().into_iter().map(|r| r.event).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Event::StepStarted { step: 0 });
        assert!(reader.read_new().await.unwrap().is_empty());
        a.append(&Event::StepDone { step: 0, elapsed_ms: 0 }).await.unwrap();
        assert_eq!(
            reader.read_new().await.unwrap()[0].event,
            Event::StepDone { step: 0, elapsed_ms: 0 }
        );
        assert_eq!(reader.seq(), 3);
        assert_eq!(a.saved_plan().await.unwrap().as_deref(), Some("plan"));
    }

    /// A poll's verdicts in one append: every record on its own line, in order, after what
    /// was there (issue 12: one fsync for them, not one each).
    #[tokio::test]
    async fn events_appended_together_read_back_as_records_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let state: Arc<dyn Store> = Arc::new(StateDir::open(dir.path()).unwrap());
        let id = state.create("plan").await.unwrap();
        let j = Journal::new(state.clone(), &id);
        j.append(&Event::StepStarted { step: 0 }).await.unwrap();
        let events: Vec<Event> = (0..3)
            .map(|k| Event::StepDone {
                step: k,
                elapsed_ms: k as u64,
            })
            .collect();
        assert_eq!(j.append_all(&events).await.unwrap().len(), 3);
        let got: Vec<Event> = j.read_all().await.unwrap().into_iter().map(|r| r.event).collect();
        assert_eq!(got[0], Event::StepStarted { step: 0 });
        assert_eq!(got[1..], events[..]);
        let text = std::fs::read_to_string(StateDir::open(dir.path()).unwrap().journal_path(&id)).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
    }

    /// Regression: 16 random bits per second clashed about once in 100 daemon starts.
    #[tokio::test]
    async fn ids_do_not_clash_within_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let mut ids = std::collections::HashSet::new();
        for _ in 0..2000 {
            ids.insert(state.create("").await.unwrap());
        }
        assert_eq!(ids.len(), 2000);
    }

    #[tokio::test]
    async fn a_torn_last_line_waits_for_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        state.create_with_id("c").unwrap();
        state.append("c", &Event::StepStarted { step: 0 }, None).await.unwrap();
        let mut f = OpenOptions::new().append(true).open(state.journal_path("c")).unwrap();
        f.write_all(b"{\"at\":\"x\",\"event\":\"step_do").unwrap();
        let (records, cursor) = state.read("c", Cursor::default()).await.unwrap();
        assert_eq!(records.len(), 1);
        f.write_all(b"ne\",\"step\":0,\"elapsed_ms\":0}\n").unwrap();
        let (rest, _) = state.read("c", cursor).await.unwrap();
        assert_eq!(rest[0].event, Event::StepDone { step: 0, elapsed_ms: 0 });
    }

    #[tokio::test]
    async fn the_target_lock_is_exclusive_and_the_index_remembers() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let arn = "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/x/1/2";
        assert_eq!(state.lease(arn).await.unwrap(), None);
        let held = state.try_lock(arn, "run me").await.unwrap().expect("free lock");
        assert!(state.try_lock(arn, "run you").await.unwrap().is_none());
        let info = state.lease(arn).await.unwrap().unwrap();
        assert_eq!((info.owner.as_str(), info.held), ("run me", true));
        drop(held);
        assert!(
            !state.lease(arn).await.unwrap().unwrap().held,
            "a free lock is not held"
        );
        assert!(state.try_lock(arn, "run you").await.unwrap().is_some());
        assert_eq!(state.latest(arn).await.unwrap(), None);
        state.set_latest(arn, "c2").await.unwrap();
        assert_eq!(state.latest(arn).await.unwrap().as_deref(), Some("c2"));
    }

    /// Regression (issue 8): journals hold the variables of every cutover; the state directory
    /// was created with the umask's modes. Directories are 0700 and files 0600.
    #[tokio::test]
    async fn the_state_directory_is_its_owners_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        let state = StateDir::open(&root).unwrap();
        let id = state.create("plan text").await.unwrap();
        state.set_latest("arn:t", &id).await.unwrap();
        let _lock = state.try_lock("arn:t", "me").await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for d in [
            root.clone(),
            root.join("cutovers"),
            root.join("targets"),
            root.join("cutovers").join(&id),
        ] {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        }
        for f in [
            state.journal_path(&id),
            state.plan_path(&id),
            state.target_file("arn:t", "latest"),
            state.target_file("arn:t", "lock"),
        ] {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
    }

    #[tokio::test]
    async fn a_missing_journal_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let e = state.read("nope", Cursor::default()).await.unwrap_err();
        assert!(matches!(e, JournalError::NotFound(_)), "{e}");
    }
}
