//! The command line's flags and subcommands (clap): raw arguments in, typed ones out.
//! Everything here is a definition; what the commands do is in the sibling modules.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::color::Color;

/// The exit codes, shown by `--help` of the commands that end with a cutover's outcome.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  promoted: the new colour holds 100 % and every step passed
  1  any other error
  2  usage or plan error; nothing was changed
  3  rolled back automatically (the judge, or a step failed); traffic verified back on the live colour
  4  rolled back by an operator (`cutover rollback`, or an interrupt)
  5  not started: a precondition failed; nothing was changed
  6  unsafe: a rollback could not be confirmed; the traffic split is unknown or mixed: page someone";

/// The exit codes of the commands that act on a cutover.
pub const ACTION_EXIT_CODES: &str = "\
Exit codes:
  0  done (rollback: traffic verified on the live colour, and the undo chain finished or handed over)
  1  any other error
  2  usage error
  6  unsafe: a rollback could not be confirmed; the traffic split is unknown or mixed: page someone";

#[derive(Parser, Debug)]
#[command(
    name = "cutover",
    version,
    about = "Blue/green cutovers of AWS ALB traffic, judged from CloudWatch",
    long_about = "Blue/green cutovers of AWS ALB traffic, judged from CloudWatch.\n\n\
                  Shifts an ALB listener's (or rule's) forward weights step by step, judges the new colour \
                  from CloudWatch at every poll, and puts traffic back on the live colour by itself when it \
                  misbehaves. AWS access uses the standard chain (AWS_PROFILE, AWS_ACCESS_KEY_ID, instance \
                  roles…); the region comes from the plan's ARNs unless AWS_REGION says otherwise.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Where the journal of every cutover lives [default: $XDG_STATE_HOME/cutover or ~/.local/state/cutover]
    #[arg(long, global = true, env = "CUTOVER_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// A shared store for journals and leases, for more than one machine: dynamodb://TABLE
    /// [default: the state directory]
    #[arg(long, global = true, env = "CUTOVER_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// The live log's format on stderr: text for people, or one JSON object per line
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CUTOVER_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Colour in the live log: auto colours a terminal unless NO_COLOR is set (or TERM=dumb)
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto, env = "CUTOVER_COLOR", value_name = "WHEN")]
    pub color: ColorWhen,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Runs one cutover in the foreground. SIGINT or SIGTERM rolls it back (exit 4).
    #[command(after_help = EXIT_CODES)]
    Run {
        /// The plan file (TOML); `cutover validate` checks it offline
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
        /// json: the summary as one JSON object on stdout at the end
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Puts all traffic back on the colour that was live when the latest cutover started
    /// (`--config FILE`), or rolls back a daemon's cutover (`ID --server URL`).
    #[command(after_help = ACTION_EXIT_CODES)]
    Rollback {
        /// A daemon's cutover id (with --server).
        #[arg(conflicts_with_all = ["config", "to"], required_unless_present = "config")]
        id: Option<String>,
        /// The plan: rolls back the latest cutover of its listener (or rule), from the journal
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
        /// Why, for the journal and the log.
        #[arg(long, short = 'r', value_name = "TEXT", default_value = "operator rollback")]
        reason: String,
        /// The colour to put traffic on, when this machine has no record of a cutover of the listener.
        #[arg(long, value_name = "blue|green")]
        to: Option<Color>,
        /// json: the summary (or the daemon's answer, with ID) as one JSON object on stdout
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Runs the daemon: cutovers of the plans in --plans, a control API, metrics.
    /// SIGTERM stops it without rolling anything back; the next start resumes.
    Serve {
        /// Address to listen on (host:port); loopback unless you give another, then add --tls-cert
        #[arg(long, short = 'l', default_value = "127.0.0.1:7878", value_name = "ADDR")]
        listen: String,
        /// Directory of plans: NAME.toml is the plan NAME.
        #[arg(long, short = 'p', value_name = "DIR")]
        plans: PathBuf,
        /// File holding the API token [or CUTOVER_TOKEN]; without a token the daemon refuses to start.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// TLS certificate chain (PEM); with --tls-key, serves HTTPS.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// This daemon's name as the owner of its cutovers [default: the host name]. Replicas on one
        /// store need different names; a restart under the same name resumes its own cutovers.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Prune finished cutovers older than this (e.g. 30d), hourly; never an unfinished one
        /// or the latest of a listener (or rule) [default: keep everything]
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        retain: Option<std::time::Duration>,
        /// The AWS API budget of this daemon, CLASS=RATE[/BURST],… in calls a second (classes:
        /// elbv2-modify, elbv2-describe, get-metric-data, describe-alarms, store); a class not
        /// named keeps its default, and a rate without a burst gets twice the rate [or CUTOVER_BUDGET].
        #[arg(long, value_name = "CLASS=RATE[/BURST],…", env = "CUTOVER_BUDGET", value_parser = crate::budget::BudgetConfig::parse)]
        budget: Option<crate::budget::BudgetConfig>,
    },
    /// Starts a cutover of plan NAME on the daemon; with --wait, streams its live log and exits with its code.
    #[command(after_help = EXIT_CODES)]
    Start {
        /// The plan's name: NAME.toml in the daemon's --plans directory
        #[arg(value_name = "NAME")]
        plan: String,
        /// A plan variable, KEY=VALUE (KEY in A-Z, 0-9, _); reaches hooks as CUTOVER_VAR_KEY.
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = crate::daemon::client::parse_var)]
        vars: Vec<(String, String)>,
        /// Stream the live log until the cutover ends, and exit with its outcome's code
        #[arg(long, short = 'w')]
        wait: bool,
        #[command(flatten)]
        server: ServerArgs,
        /// json: the id as {"id": …} at once, and with --wait the summary at the end
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Lists the daemon's cutovers, newest first.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// json: {"cutovers": […]} on stdout
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Streams a daemon cutover's live log until it ends; exits with its outcome's code.
    #[command(after_help = EXIT_CODES)]
    Watch {
        /// The cutover's id (as `cutover start` printed it, or from `cutover list`)
        id: String,
        #[command(flatten)]
        server: ServerArgs,
        /// json: the summary as one JSON object on stdout at the end
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Holds the bake clock (judging and automatic rollback go on): of the latest cutover of the
    /// plan's listener (`--config FILE`, through the journal) or of a daemon's (`ID --server URL`).
    #[command(after_help = ACTION_EXIT_CODES)]
    Pause(ControlArgs),
    /// Lets the bake clock run again (after drift, re-applies the plan's weights first).
    #[command(after_help = ACTION_EXIT_CODES)]
    Resume(ControlArgs),
    /// Ends the current bake now.
    #[command(after_help = ACTION_EXIT_CODES)]
    Promote(ControlArgs),
    /// Go: approves the waiting approval step (as the token's name with --server, as the local
    /// user with --config).
    #[command(after_help = ACTION_EXIT_CODES)]
    Approve(ControlArgs),
    /// No-Go: rejects the waiting approval step; the cutover rolls back.
    #[command(after_help = ACTION_EXIT_CODES)]
    Reject(ControlArgs),
    /// Current weights and the latest cutover's state.
    Status {
        /// The plan: its listener's (or rule's) weights and latest cutover
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
        /// json: one JSON object on stdout
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Deletes the journals of finished cutovers older than --older-than from the state
    /// directory; never an unfinished cutover or the latest one of a listener (or rule).
    Prune {
        /// How old a finished cutover must be (by its end) to go, e.g. 30d
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
        /// List what would go, delete nothing
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
    /// Asks a daemon whether it can serve (GET /health, no token): exit 0 if it answers 200
    /// within 3 s, 1 otherwise. The container image's health check.
    Health {
        /// The daemon's URL
        #[arg(
            long,
            short = 's',
            env = "CUTOVER_SERVER",
            value_name = "URL",
            default_value = "http://127.0.0.1:7878"
        )]
        server: String,
    },
    /// Prints a completion script for a shell: `cutover completions bash > /etc/bash_completion.d/cutover`.
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Prints the manual page (roff) on stdout, or writes one page per command into --dir.
    Man {
        /// Write cutover.1 and cutover-COMMAND.1 into this directory
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// The shared store: `cutover store init --store dynamodb://TABLE` creates its table.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Writes a cutover's report, from its journal alone (never AWS): of the latest cutover of the
    /// plan's listener or rule (`--config FILE`), of `--id ID` in the state directory, or of a
    /// daemon's cutover (`ID --server URL`). One self-contained HTML page by default.
    Report {
        /// A daemon's cutover id (with --server).
        #[arg(conflicts_with_all = ["config", "local_id"], required_unless_present_any = ["config", "local_id"])]
        id: Option<String>,
        /// The plan: reports on the latest cutover of its listener (or rule), in the state directory.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        /// A cutover id in the state directory, instead of the plan's latest.
        #[arg(long = "id", id = "local_id", value_name = "ID")]
        local_id: Option<String>,
        /// Where to write it; `-` (the default) is stdout.
        #[arg(long, short = 'o', value_name = "FILE", default_value = "-")]
        output: PathBuf,
        /// The report's form
        #[arg(long, short = 'f', value_enum, default_value_t = ReportFormat::Html)]
        format: ReportFormat,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Checks the plan without calling AWS: every key, and that its commands exist and are
    /// executable. Exit 0: valid; 2: the file, key and reason of each problem.
    Validate {
        /// The plan file (TOML)
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
        /// json: {"ok": …, "file": …, "steps": […]} or the errors, on stdout
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Replays the plan's criteria over CloudWatch history; writes nothing to the ALB.
    /// Exit 0: would not have rolled back; 3: would have; 5: would not have started (the live
    /// colour already failed the thresholds); 2: usage or plan error.
    #[command(
        after_help = "Exit codes:\n  0  would not have rolled back\n  1  any other error\n  2  usage or plan error\n  3  would have rolled back\n  5  would not have started: the live colour already failed the thresholds"
    )]
    Backtest {
        /// The plan whose criteria are replayed
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
        /// The colour that was new: its target group is judged against the other's.
        #[arg(long, value_name = "blue|green")]
        new: Color,
        /// Start: RFC 3339 (2026-05-01T10:00:00Z) or a duration ago (3h).
        #[arg(long, value_name = "TIME")]
        from: String,
        /// End: RFC 3339 or a duration ago [default: now].
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// json: one JSON object per period, then a summary
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// What to do with the shared store.
#[derive(Subcommand, Debug)]
pub enum StoreAction {
    /// Creates the table of `--store dynamodb://TABLE` (on-demand), if it does not exist.
    Init,
}

/// Which cutover an operator action is for, and why.
#[derive(clap::Args, Debug, Clone)]
pub struct ControlArgs {
    /// A daemon's cutover id (with --server).
    #[arg(conflicts_with = "config", required_unless_present = "config")]
    pub id: Option<String>,
    /// The plan: acts on the latest cutover of its listener (or rule), in the store.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Why, for the journal and the log.
    #[arg(long, short = 'r', value_name = "TEXT")]
    pub reason: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
    /// json: the cutover's state (with ID) as one JSON object on stdout
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Where the daemon is, for the client commands.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// The daemon's URL.
    #[arg(
        long,
        short = 's',
        env = "CUTOVER_SERVER",
        value_name = "URL",
        default_value = "http://127.0.0.1:7878"
    )]
    pub server: String,
    /// The API token (better from CUTOVER_TOKEN or --token-file: a flag shows in `ps`).
    #[arg(long, env = "CUTOVER_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// A file holding the API token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl ServerArgs {
    pub fn client(&self) -> anyhow::Result<crate::daemon::client::Client> {
        let token = read_token(self.token_file.as_deref(), self.token.clone())?;
        crate::daemon::client::Client::new(&self.server, &token)
    }
}

/// The token from a file (trimmed) or the given value.
pub fn read_token(file: Option<&Path>, value: Option<String>) -> anyhow::Result<String> {
    match file {
        Some(f) => Ok(std::fs::read_to_string(f)
            .with_context(|| format!("reading the token file {}", f.display()))?
            .trim()
            .to_string()),
        None => Ok(value.unwrap_or_default().trim().to_string()),
    }
}

/// The daemon's tokens from a token file's text: one `NAME TOKEN` a line (blank lines and `#`
/// comments skipped), or a single token alone (named `api`). Each token at least 16
/// characters, names letters, digits and `-_.@`, both unique.
pub fn parse_tokens(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut tokens: Vec<(String, String)> = vec![];
    for (i, line) in lines.iter().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (name, token) = match fields.as_slice() {
            [token] if lines.len() == 1 => ("api", *token),
            [name, token] => (*name, *token),
            _ => anyhow::bail!("token line {}: expected `NAME TOKEN` (or one token alone)", i + 1),
        };
        if token.len() < 16 {
            anyhow::bail!("the token of {name} is shorter than 16 characters");
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) {
            anyhow::bail!("token name {name:?}: use letters, digits and - _ . @");
        }
        if tokens.iter().any(|(n, t)| n == name || t == token) {
            anyhow::bail!("token name {name:?} or its token appears twice");
        }
        tokens.push((name.to_string(), token.to_string()));
    }
    if tokens.is_empty() {
        anyhow::bail!("no API token");
    }
    Ok(tokens)
}

/// Refuses a token file that group or others may read, as ssh refuses such keys: whoever can
/// read it can roll back or start any cutover.
pub fn check_token_file(file: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file)
        .with_context(|| format!("reading the token file {}", file.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "permissions {:04o} for the token file {} are too open: it must be readable by its owner only \
             (chmod 600 {})",
            mode & 0o7777,
            file.display(),
            file.display()
        );
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum LogFormat {
    /// One line per event for people: time, level, the decisive part first
    Text,
    /// One JSON object per line, with the cutover id and the numbers as fields
    Json,
}

/// `--color`.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum ColorWhen {
    /// On a terminal, unless NO_COLOR is set or TERM=dumb
    Auto,
    /// Always, also into a pipe or a file
    Always,
    /// Never
    Never,
}

impl From<ColorWhen> for crate::live_log::output::ColorChoice {
    fn from(c: ColorWhen) -> Self {
        use crate::live_log::output::ColorChoice;
        match c {
            ColorWhen::Auto => ColorChoice::Auto,
            ColorWhen::Always => ColorChoice::Always,
            ColorWhen::Never => ColorChoice::Never,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum Output {
    /// Lines for people
    Text,
    /// One JSON object
    Json,
}

/// The formats of `cutover report`.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum ReportFormat {
    /// One self-contained HTML page with the timeline chart.
    Html,
    /// The record as one JSON object.
    Json,
    /// The record in Markdown, for a ticket or a post-mortem.
    Markdown,
}

impl From<ReportFormat> for crate::report::Format {
    fn from(f: ReportFormat) -> Self {
        match f {
            ReportFormat::Html => crate::report::Format::Html,
            ReportFormat::Json => crate::report::Format::Json,
            ReportFormat::Markdown => crate::report::Format::Markdown,
        }
    }
}
