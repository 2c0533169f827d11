//! The journal: the state directory, one append-only intent log per cutover,
//! and the per-listener lock and index.
//!
//! **Architecture Invariant:** every state change is appended and fsync'd here
//! before it is acted on. A journal line is one JSON object (`at` plus a
//! [`saga::Event`](crate::saga::Event)), written with a single `write` on a file
//! opened with `O_APPEND`, so the run that owns a cutover and an operator's
//! `cutover rollback` can both append to it safely.
//!
//! Layout of `--state-dir`:
//!
//! ```text
//! cutovers/<id>/journal.jsonl   the intent log of one cutover
//! cutovers/<id>/plan.toml       the plan it started with (resume and rollback follow it)
//! targets/<key>.latest          the id of the latest cutover of a listener or rule
//! targets/<key>.lock            held (flock) by the process driving that listener's cutover
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::saga::Event;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
    #[serde(flatten)]
    pub event: Event,
}

/// Why the journal could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading or writing the state directory failed.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// A line is not a journal record (written by something else, or by a newer cutover).
    #[error("{}: line {line}: {message}", path.display())]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Now, as a journal timestamp.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens (creating) a state directory.
    pub fn open(root: &Path) -> Result<StateDir, JournalError> {
        for sub in ["cutovers", "targets"] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p).map_err(io_err(&p))?;
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

    /// Takes the lock of a listener or rule without waiting: `None` if another process holds it.
    /// The lock is held until the returned file is dropped (or the process dies).
    pub fn try_lock_target(&self, target_arn: &str) -> Result<Option<File>, JournalError> {
        let path = self
            .root
            .join("targets")
            .join(format!("{}.lock", Self::key(target_arn)));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(io_err(&path)(e)),
        }
    }

    /// The id of the latest cutover of a listener or rule.
    pub fn latest(&self, target_arn: &str) -> Result<Option<String>, JournalError> {
        let path = self
            .root
            .join("targets")
            .join(format!("{}.latest", Self::key(target_arn)));
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Records `id` as the latest cutover of a listener or rule (atomically: write, fsync, rename).
    pub fn set_latest(&self, target_arn: &str, id: &str) -> Result<(), JournalError> {
        let dir = self.root.join("targets");
        let path = dir.join(format!("{}.latest", Self::key(target_arn)));
        let tmp = dir.join(format!("{}.latest.tmp", Self::key(target_arn)));
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(id.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        File::open(&dir).and_then(|d| d.sync_all()).map_err(io_err(&dir))
    }

    /// Where a cutover's journal lives.
    pub fn journal_path(&self, id: &str) -> PathBuf {
        self.root.join("cutovers").join(id).join("journal.jsonl")
    }

    /// Keeps a copy of the plan a cutover started with (`cutovers/<id>/plan.toml`): resuming and
    /// rolling back follow the plan as it was, not as the file reads after someone edited it.
    pub fn save_plan(&self, id: &str, text: &str) -> Result<(), JournalError> {
        let path = self.root.join("cutovers").join(id).join("plan.toml");
        let mut f = File::create(&path).map_err(io_err(&path))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(io_err(&path))
    }

    /// Whether a cutover has finished, as its saga sees it (an unreadable journal has not).
    pub fn is_finished(&self, id: &str) -> bool {
        read_all(&self.journal_path(id))
            .ok()
            .and_then(|records| crate::saga::Saga::replay(records.iter().map(|r| &r.event)).ok())
            .is_some_and(|saga| saga.outcome().is_some())
    }

    /// The plan copy of a cutover, if it has one.
    pub fn saved_plan(&self, id: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join("cutovers").join(id).join("plan.toml")).ok()
    }

    /// Creates the journal of a new cutover.
    pub fn create(&self, id: &str) -> Result<Journal, JournalError> {
        let dir = self.root.join("cutovers").join(id);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = self.journal_path(id);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        File::open(&dir).and_then(|d| d.sync_all()).map_err(io_err(&dir))?;
        Ok(Journal { path, file })
    }

    /// Creates the journal of a new cutover under a fresh id (retrying on the rare clash).
    pub fn create_new(&self) -> Result<(String, Journal), JournalError> {
        let mut last = None;
        for _ in 0..5 {
            let id = new_id();
            match self.create(&id) {
                Ok(j) => return Ok((id, j)),
                Err(JournalError::Io { source, path }) if source.kind() == io::ErrorKind::AlreadyExists => {
                    last = Some(JournalError::Io { source, path });
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// Opens the journal of an existing cutover for appending.
    pub fn open_journal(&self, id: &str) -> Result<Journal, JournalError> {
        let path = self.journal_path(id);
        let file = OpenOptions::new().append(true).open(&path).map_err(io_err(&path))?;
        Ok(Journal { path, file })
    }

    /// Every cutover id, oldest first (ids sort by start time).
    pub fn ids(&self) -> Result<Vec<String>, JournalError> {
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

/// A cutover id: its start time and a random suffix, e.g. `20261122T023000Z-3fa2c9d1`.
/// Ids sort by start time; [`StateDir::create_new`] retries in the unlikely case of a clash.
pub fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now();
    let stamp: String = humantime::format_rfc3339_seconds(now)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    // RandomState is seeded from the OS per process; mixed with time, pid and a counter.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{stamp}-{:08x}", h.finish() as u32)
}

/// The append side of one cutover's journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event and fsyncs it before returning.
    pub fn append(&self, event: &Event) -> Result<Record, JournalError> {
        let record = Record {
            at: now_rfc3339(),
            event: event.clone(),
        };
        let mut line = serde_json::to_vec(&record).expect("journal records serialize");
        line.push(b'\n');
        // One write call per line: with O_APPEND, concurrent writers never interleave within it.
        (&self.file).write_all(&line).map_err(io_err(&self.path))?;
        self.file.sync_data().map_err(io_err(&self.path))?;
        Ok(record)
    }
}

/// Reads a journal incrementally: each call returns the records appended since the last one.
#[derive(Debug, Clone)]
pub struct Reader {
    path: PathBuf,
    offset: u64,
    line: usize,
}

impl Reader {
    pub fn new(path: &Path) -> Reader {
        Reader {
            path: path.to_path_buf(),
            offset: 0,
            line: 0,
        }
    }

    /// Records appended since the last call. A last line without its newline is a write in
    /// progress (or torn by a crash) and is left for the next call.
    pub fn read_new(&mut self) -> Result<Vec<Record>, JournalError> {
        let mut f = File::open(&self.path).map_err(io_err(&self.path))?;
        f.seek(SeekFrom::Start(self.offset)).map_err(io_err(&self.path))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(io_err(&self.path))?;
        let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let mut records = Vec::new();
        for raw in buf[..complete].split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            self.line += 1;
            let record = serde_json::from_slice(raw).map_err(|e| JournalError::Corrupt {
                path: self.path.clone(),
                line: self.line,
                message: e.to_string(),
            })?;
            records.push(record);
        }
        self.offset += complete as u64;
        Ok(records)
    }
}

/// The `Started` record of a journal, if it has one.
pub fn start_of(records: &[Record]) -> Option<crate::saga::Start<'_>> {
    records.iter().find_map(|r| r.event.start())
}

/// Reads a whole journal.
pub fn read_all(path: &Path) -> Result<Vec<Record>, JournalError> {
    Reader::new(path).read_new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saga::Trigger;

    #[test]
    fn appended_records_read_back_in_order_across_writers() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let id = new_id();
        let a = state.create(&id).unwrap();
        let b = state.open_journal(&id).unwrap();
        let mut reader = Reader::new(a.path());
        a.append(&Event::StepStarted { step: 0 }).unwrap();
        b.append(&Event::RollbackRequested {
            trigger: Trigger::Operator,
            reason: "r".into(),
            by: "me".into(),
        })
        .unwrap();
        let got: Vec<Event> = reader.read_new().unwrap().into_iter().map(|r| r.event).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Event::StepStarted { step: 0 });
        assert!(reader.read_new().unwrap().is_empty());
        a.append(&Event::StepDone { step: 0, elapsed_ms: 0 }).unwrap();
        assert_eq!(
            reader.read_new().unwrap()[0].event,
            Event::StepDone { step: 0, elapsed_ms: 0 }
        );
    }

    /// Regression: 16 random bits per second clashed about once in 100 daemon starts.
    #[test]
    fn ids_do_not_clash_within_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let ids: std::collections::HashSet<String> = (0..2000).map(|_| state.create_new().unwrap().0).collect();
        assert_eq!(ids.len(), 2000);
    }

    #[test]
    fn a_torn_last_line_waits_for_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let j = state.create("c").unwrap();
        j.append(&Event::StepStarted { step: 0 }).unwrap();
        (&j.file).write_all(b"{\"at\":\"x\",\"event\":\"step_do").unwrap();
        assert_eq!(read_all(j.path()).unwrap().len(), 1);
    }

    #[test]
    fn the_target_lock_is_exclusive_and_the_index_remembers() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let arn = "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/x/1/2";
        let held = state.try_lock_target(arn).unwrap().expect("free lock");
        assert!(state.try_lock_target(arn).unwrap().is_none());
        drop(held);
        assert!(state.try_lock_target(arn).unwrap().is_some());
        assert_eq!(state.latest(arn).unwrap(), None);
        state.set_latest(arn, "c2").unwrap();
        assert_eq!(state.latest(arn).unwrap().as_deref(), Some("c2"));
    }
}
