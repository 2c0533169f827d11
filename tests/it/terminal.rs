//! Colour on a real terminal (issue 14.3): the live log's stderr on a pseudo-terminal, so
//! that `auto` sees a terminal exactly as it would on an operator's screen, with `NO_COLOR`,
//! `TERM=dumb` and `--color auto|always|never`. No AWS: `validate` of a plan that does not
//! exist logs one ERROR line, which the human form colours.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

use crate::util::*;

/// Where a command's stderr goes.
#[derive(Clone, Copy)]
enum Stderr {
    Terminal,
    Pipe,
}

/// Runs `cutover validate --config missing.toml` with `extra` flags and `env`; returns its
/// stderr as written.
fn validate(to: Stderr, extra: &[&str], env: &[(&str, &str)]) -> String {
    let wd = Workdir::new();
    let missing = wd.path().join("missing.toml");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.args(["validate", "--config", missing.to_str().unwrap()])
        .args(extra)
        .env_remove("NO_COLOR")
        .env_remove("CUTOVER_COLOR")
        .env_remove("CUTOVER_LOG")
        .env("CUTOVER_LOG_FORMAT", "text")
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    match to {
        Stderr::Pipe => {
            let out = cmd.stderr(Stdio::piped()).output().expect("run cutover");
            assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stderr).into_owned()
        }
        Stderr::Terminal => {
            let (mut master, slave) = pty();
            let mut child = cmd.stderr(Stdio::from(slave)).spawn().expect("run cutover");
            // The parent's copy of the slave went with the Command's stdio: once the child
            // exits, reading the master ends (EIO on Linux).
            drop(cmd);
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match master.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
            assert_eq!(child.wait().unwrap().code(), Some(2));
            String::from_utf8_lossy(&out).into_owned()
        }
    }
}

/// A pseudo-terminal: the master to read, the slave to give the child.
fn pty() -> (std::fs::File, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors into the integers given; name, termios and
    // window size are optional and left null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and are owned by nobody else.
    unsafe { (std::fs::File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

const ESC: &str = "\x1b[";

/// Where stderr goes, the flags, the environment, whether colour is expected, and what the
/// case is.
type Case<'a> = (Stderr, &'a [&'a str], &'a [(&'a str, &'a str)], bool, &'a str);

/// Regression (issue 14.3): `with_ansi(is_terminal())` ignored NO_COLOR on a terminal, and
/// there was no `--color`.
#[test]
fn colour_follows_the_terminal_no_color_and_the_flag() {
    use Stderr::*;
    let cases: &[Case] = &[
        (Terminal, &[], &[], true, "a terminal is coloured"),
        (Terminal, &[], &[("NO_COLOR", "1")], false, "NO_COLOR on a terminal"),
        (
            Terminal,
            &[],
            &[("NO_COLOR", "")],
            true,
            "an empty NO_COLOR is as if unset",
        ),
        (Terminal, &[], &[("TERM", "dumb")], false, "TERM=dumb"),
        (
            Terminal,
            &["--color", "never"],
            &[],
            false,
            "--color never on a terminal",
        ),
        (
            Terminal,
            &[],
            &[("CUTOVER_COLOR", "never")],
            false,
            "CUTOVER_COLOR=never",
        ),
        (
            Terminal,
            &["--color", "always"],
            &[("NO_COLOR", "1")],
            true,
            "the flag beats NO_COLOR",
        ),
        (Pipe, &[], &[], false, "a pipe is not coloured"),
        (Pipe, &["--color", "always"], &[], true, "--color always into a pipe"),
        (Pipe, &["--color", "auto"], &[], false, "--color auto into a pipe"),
    ];
    for (to, flags, env, coloured, what) in cases {
        let stderr = validate(*to, flags, env);
        assert!(stderr.contains("invalid plan"), "{what}: {stderr:?}");
        assert_eq!(stderr.contains(ESC), *coloured, "{what}: {stderr:?}");
        if *coloured {
            // The level in red: the colour is the human form's, not stray bytes.
            assert!(stderr.contains("\x1b[31mERROR"), "{what}: {stderr:?}");
        }
    }
}

/// A bad `--color` value is a usage error that names the choices.
#[test]
fn a_bad_color_value_names_the_choices() {
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["--color", "sometimes", "validate", "--config", "x.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("auto") && stderr.contains("always") && stderr.contains("never"),
        "{stderr}"
    );
}
