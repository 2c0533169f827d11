//! Hooks: the user's commands (deploy, migrate, their undos, command checks) and
//! HTTP checks, each with a deadline.
//!
//! Commands run in the plan file's directory, in their own process group, with
//! the `CUTOVER_*` environment. When a deadline passes, or the future running a
//! command is dropped (a rollback interrupted the step), the whole process group
//! is killed: no orphaned `deploy.sh` keeps going after cutover moved on.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// How many lines of a failed command's output are quoted in its error.
const TAIL_LINES: usize = 10;
/// How long output is still read after a command exited (a background child may hold its pipes).
const OUTPUT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// A hook that succeeded.
#[derive(Debug, Clone, PartialEq)]
pub struct HookOk {
    pub elapsed: Duration,
    /// `exit 0`, `HTTP 200`.
    pub detail: String,
}

/// Why a hook failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HookError {
    /// The program could not be started.
    #[error("cannot start {program:?}: {message}")]
    Spawn { program: String, message: String },
    /// The command exited non-zero or was killed by a signal.
    #[error("{program:?} {status}{}", tail_suffix(.tail))]
    Failed {
        program: String,
        status: String,
        tail: Vec<String>,
    },
    /// The deadline passed; the process group was killed.
    #[error("{what} timed out after {}", humantime::format_duration(*.timeout))]
    Timeout { what: String, timeout: Duration },
    /// An HTTP check got the wrong status or no answer.
    #[error("GET {url}: {message}")]
    Http { url: String, message: String },
}

fn tail_suffix(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last output: {}", tail.join(" ⏎ "))
    }
}

/// What the engine needs to run the user's hooks.
pub trait Hooks: Send + Sync {
    /// Runs `argv` with extra environment `env`, killed after `timeout`.
    fn command(
        &self,
        argv: &[String],
        env: &[(String, String)],
        timeout: Duration,
    ) -> impl Future<Output = Result<HookOk, HookError>> + Send;
    /// GETs `url` and expects `expect_status`.
    fn http(
        &self,
        url: &str,
        expect_status: u16,
        timeout: Duration,
    ) -> impl Future<Output = Result<HookOk, HookError>> + Send;
}

/// Hooks as real processes and HTTP requests.
#[derive(Debug, Clone)]
pub struct Processes {
    /// The working directory of every command: the plan file's directory.
    pub dir: PathBuf,
    http: reqwest::Client,
    /// What commands get of cutover's own environment.
    env: HookEnv,
}

/// What a command inherits from cutover's environment.
///
/// By default everything, because deploy and migrate commands in CI usually need the job's
/// AWS credentials and tools, except the daemon's API token: `CUTOVER_TOKEN` and any
/// variable holding the token's value are removed, whatever the token's source. With a
/// clean environment, only `PATH`, `HOME`, `LANG`, `TZ`, `USER`, `LOGNAME` and the names in
/// `pass` are kept (the `CUTOVER_*` variables of the cutover are always set).
#[derive(Debug, Clone, Default)]
pub struct HookEnv {
    pub clean: bool,
    pub pass: Vec<String>,
    /// Values no command may see (the daemon's API token).
    pub secrets: Vec<String>,
}

/// What a clean environment keeps, besides the plan's pass list.
pub const CLEAN_ENV_KEEPS: &[&str] = &["PATH", "HOME", "LANG", "TZ", "USER", "LOGNAME"];

impl HookEnv {
    /// The variables of cutover's own environment a command starts with.
    fn inherited(&self) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
        std::env::vars_os()
            .filter(|(k, v)| {
                let name = k.to_string_lossy();
                if name == "CUTOVER_TOKEN" || self.secrets.iter().any(|s| !s.is_empty() && v.to_string_lossy() == *s) {
                    return false;
                }
                !self.clean || CLEAN_ENV_KEEPS.contains(&name.as_ref()) || self.pass.iter().any(|p| *p == name)
            })
            .collect()
    }
}

/// The HTTP client of HTTP hooks: no redirects (a check answers for the URL the plan names).
/// A process builds it once ([`crate::aws::Clients`]) and every cutover's [`Processes`] shares it.
pub fn http_client() -> reqwest::Client {
    #[cfg(test)]
    tests::HTTP_CLIENTS_BUILT.with(|n| n.set(n.get() + 1));
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

impl Processes {
    /// Hooks run in `dir`, their HTTP checks sent with `http` (a clone of the process's
    /// [`http_client`]: clones share one connection pool and one TLS configuration).
    pub fn new(dir: PathBuf, http: reqwest::Client) -> Processes {
        Processes {
            dir,
            http,
            env: HookEnv::default(),
        }
    }

    /// Commands get `env` of cutover's own environment (see [`HookEnv`]).
    pub fn with_env(mut self, env: HookEnv) -> Processes {
        self.env = env;
        self
    }
}

/// Kills a process group when dropped, unless disarmed.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    #[allow(
        unsafe_code,
        reason = "kill(2) of a process group has no safe wrapper in std or tokio"
    )]
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: kill(2) with a negative pid signals a process group; it has no memory effects.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Hooks for Processes {
    async fn command(&self, argv: &[String], env: &[(String, String)], timeout: Duration) -> Result<HookOk, HookError> {
        let program = argv[0].clone();
        let started = tokio::time::Instant::now();
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .current_dir(&self.dir)
            .env_clear()
            .envs(self.env.inherited())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| HookError::Spawn {
                program: program.clone(),
                message: e.to_string(),
            })?;
        let _guard = GroupGuard(child.id().map(|p| p as i32));

        // Each output line goes to the live log as it comes; the last few are kept for the error.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let pump = |r: Box<dyn tokio::io::AsyncRead + Send + Unpin>, tx: tokio::sync::mpsc::UnboundedSender<String>| {
            tokio::spawn(async move {
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
        };
        if let Some(out) = child.stdout.take() {
            pump(Box::new(out), tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            pump(Box::new(err), tx.clone());
        }
        drop(tx);
        let name = program.clone();
        let collector = tokio::spawn(async move {
            let mut tail = std::collections::VecDeque::new();
            while let Some(line) = rx.recv().await {
                tracing::info!(hook = %name, "  │ {line}");
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            tail
        });
        let status = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                collector.abort();
                return Err(HookError::Timeout {
                    what: format!("{program:?}"),
                    timeout,
                });
            }
        };
        // The leader exited. A background child it started may still hold its stdout; read what
        // is left for a short grace period rather than waiting for that child to exit.
        let tail = match tokio::time::timeout(OUTPUT_GRACE, collector).await {
            Ok(Ok(tail)) => tail,
            _ => Default::default(),
        };
        // The leader exited; whatever it left running in its group is killed by the guard when
        // this function returns, so a hook cannot leave processes behind.
        let status = status.map_err(|e| HookError::Spawn {
            program: program.clone(),
            message: e.to_string(),
        })?;
        let elapsed = started.elapsed();
        if status.success() {
            Ok(HookOk {
                elapsed,
                detail: "exit 0".into(),
            })
        } else {
            let status = match status.code() {
                Some(c) => format!("exited with {c}"),
                None => "was killed by a signal".into(),
            };
            Err(HookError::Failed {
                program,
                status,
                tail: tail.into_iter().collect(),
            })
        }
    }

    async fn http(&self, url: &str, expect_status: u16, timeout: Duration) -> Result<HookOk, HookError> {
        let started = tokio::time::Instant::now();
        let err = |message: String| HookError::Http {
            url: url.to_string(),
            message,
        };
        let resp = match tokio::time::timeout(timeout, self.http.get(url).send()).await {
            Err(_) => {
                return Err(HookError::Timeout {
                    what: format!("GET {url}"),
                    timeout,
                });
            }
            Ok(Err(e)) => return Err(err(e.to_string())),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        if status != expect_status {
            return Err(err(format!("HTTP {status}, expected {expect_status}")));
        }
        Ok(HookOk {
            elapsed: started.elapsed(),
            detail: format!("HTTP {status}"),
        })
    }
}

/// Every command a plan runs, with the key it comes from (`steps[1].run`, `hooks[0]`).
pub fn plan_commands(plan: &crate::config::Plan) -> Vec<(String, Vec<String>)> {
    use crate::config::{Check, Step};
    let mut out = vec![];
    let check = |out: &mut Vec<(String, Vec<String>)>, key: String, c: &Check| {
        if let Check::Command { argv, .. } = c {
            out.push((key, argv.clone()));
        }
    };
    for (i, step) in plan.steps.iter().enumerate() {
        match step {
            Step::Verify { checks } => {
                for (j, c) in checks.iter().enumerate() {
                    check(&mut out, format!("steps[{i}].checks[{j}].command"), c);
                }
            }
            Step::Deploy { command, .. } | Step::Migrate { command } => {
                out.push((format!("steps[{i}].run"), command.run.clone()));
                if let Some(undo) = &command.undo {
                    out.push((format!("steps[{i}].undo"), undo.clone()));
                }
            }
            _ => {}
        }
    }
    for (k, hook) in plan.hooks.iter().enumerate() {
        check(&mut out, format!("hooks[{k}].command"), &hook.check);
    }
    out
}

/// Why `argv` would not start from `dir` (as [`Processes`] starts it: a path with a `/` from
/// `dir`, a bare name from `PATH`), or `None` when it would: missing, a directory, or not
/// executable. Run by `cutover validate`, which calls nothing else.
pub fn unrunnable(argv: &[String], dir: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let program = argv.first()?;
    let check = |path: &std::path::Path| -> Result<(), String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{} does not exist ({e})", path.display()))?;
        if meta.is_dir() {
            return Err(format!("{} is a directory", path.display()));
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(format!(
                "{} is not executable (chmod +x {})",
                path.display(),
                path.display()
            ));
        }
        Ok(())
    };
    if program.contains('/') {
        return check(&dir.join(program)).err();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file());
    match found {
        Some(p) => check(&p).err(),
        None => Some(format!(
            "{program} is not on PATH (write ./{program} for a file beside the plan)"
        )),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    thread_local! {
        /// How many HTTP clients [`http_client`] and [`crate::notify::deliver::client`] built
        /// on this thread.
        pub(crate) static HTTP_CLIENTS_BUILT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn commands_get_the_environment_and_their_exit_status() {
        let h = Processes::new(std::env::temp_dir(), http_client());
        let env = vec![("CUTOVER_NEW_COLOR".to_string(), "green".to_string())];
        let ok = h
            .command(
                &sh("test \"$CUTOVER_NEW_COLOR\" = green"),
                &env,
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(ok.detail, "exit 0");
        let e = h
            .command(&sh("echo boom; exit 3"), &env, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "\"sh\" exited with 3; last output: boom");
        let e = h
            .command(&["/nonexistent/deploy".to_string()], &env, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(matches!(e, HookError::Spawn { .. }), "{e}");
    }

    /// Regression (issue 8): hooks inherited the whole environment, the daemon's API token
    /// included. A value marked secret never reaches a command, and a clean environment keeps
    /// only the basics and the plan's pass list (plus what cutover sets).
    #[tokio::test]
    async fn commands_never_see_secrets_and_can_get_a_clean_environment() {
        // cargo sets CARGO_MANIFEST_DIR for the test process: a stand-in for a job's variable.
        let value = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        let probe = sh("test -z \"$CARGO_MANIFEST_DIR\" && test -n \"$PATH\" && test \"$CUTOVER_ID\" = c1");
        let cutover_env = vec![("CUTOVER_ID".to_string(), "c1".to_string())];
        let t = Duration::from_secs(10);
        let inherit = Processes::new(std::env::temp_dir(), http_client());
        assert!(
            inherit.command(&probe, &cutover_env, t).await.is_err(),
            "inherits by default"
        );
        let scrubbed = Processes::new(std::env::temp_dir(), http_client()).with_env(HookEnv {
            secrets: vec![value],
            ..HookEnv::default()
        });
        scrubbed.command(&probe, &cutover_env, t).await.unwrap();
        let clean = Processes::new(std::env::temp_dir(), http_client()).with_env(HookEnv {
            clean: true,
            ..HookEnv::default()
        });
        clean.command(&probe, &cutover_env, t).await.unwrap();
        let passed = Processes::new(std::env::temp_dir(), http_client()).with_env(HookEnv {
            clean: true,
            pass: vec!["CARGO_MANIFEST_DIR".into()],
            ..HookEnv::default()
        });
        assert!(
            passed.command(&probe, &cutover_env, t).await.is_err(),
            "the pass list passes"
        );
    }

    /// Regression (review): a script that leaves a background process holding its stdout
    /// used to hang until its timeout.
    #[tokio::test]
    async fn a_background_child_holding_stdout_does_not_block_the_hook() {
        let h = Processes::new(std::env::temp_dir(), http_client());
        let started = std::time::Instant::now();
        let ok = h
            .command(&sh("echo started; sleep 30 &"), &[], Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(ok.detail, "exit 0");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let h = Processes::new(dir.path().to_path_buf(), http_client());
        // The background child would write the marker after 2 s if it outlived the timeout.
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let e = h
            .command(&sh(&script), &[], Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(e, HookError::Timeout { .. }), "{e}");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "a child of the timed-out hook survived");
    }

    /// Regression (issue 14.6): `validate` passed a plan whose scripts did not exist.
    #[test]
    fn commands_that_would_not_start_are_found_before_the_cutover() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, mode: u32| {
            let p = dir.path().join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        file("deploy.sh", 0o755);
        file("notes.txt", 0o644);
        let argv = |s: &str| vec![s.to_string()];
        assert_eq!(unrunnable(&argv("./deploy.sh"), dir.path()), None);
        assert!(
            unrunnable(&argv("./missing.sh"), dir.path())
                .unwrap()
                .contains("does not exist")
        );
        assert!(
            unrunnable(&argv("./notes.txt"), dir.path())
                .unwrap()
                .contains("is not executable")
        );
        assert!(unrunnable(&argv("./"), dir.path()).unwrap().contains("is a directory"));
        assert_eq!(unrunnable(&argv("sh"), dir.path()), None);
        assert!(
            unrunnable(&argv("no-such-program-0x14"), dir.path())
                .unwrap()
                .contains("not on PATH")
        );
    }
}
