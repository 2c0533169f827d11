//! The command line: `run`, `rollback`, `status`, `validate`.
//!
//! A thin edge: it parses flags, loads the plan, wires the real adapters into
//! the [`Engine`], and maps outcomes to the documented exit codes
//! (0 promoted, 2 plan/usage, 3 rolled back, 4 rolled back by an operator,
//! 5 not started, 6 unsafe, 1 anything else).

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::color::{Color, Split};
use crate::config::{self, Plan};
use crate::engine::{self, Clock, Engine, summarize};
use crate::hooks::Processes;
use crate::journal::{self, StateDir};
use crate::metrics::CloudWatch;
use crate::saga::{Outcome, Saga};
use crate::traffic::{self, Alb, Traffic};

/// Exit code: usage or plan error; nothing was changed.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: any other error.
pub const EXIT_ERROR: i32 = 1;

#[derive(Parser, Debug)]
#[command(
    name = "cutover",
    version,
    about = "Blue/green cutovers of AWS ALB traffic, judged from CloudWatch"
)]
struct Cli {
    /// Where the journal of every cutover lives [default: $XDG_STATE_HOME/cutover or ~/.local/state/cutover]
    #[arg(long, global = true, env = "CUTOVER_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The live log's format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CUTOVER_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs one cutover in the foreground. SIGINT or SIGTERM rolls it back (exit 4).
    Run {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// `json` prints the summary as one JSON object on stdout at the end.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Puts all traffic back on the colour that was live when the latest cutover started
    /// (`--config FILE`), or rolls back a daemon's cutover (`ID --server URL`).
    Rollback {
        /// A daemon's cutover id (with --server).
        #[arg(conflicts_with_all = ["config", "to"], required_unless_present = "config")]
        id: Option<String>,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
        /// Why, for the journal and the log.
        #[arg(long, default_value = "operator rollback")]
        reason: String,
        /// The colour to put traffic on, when this machine has no record of a cutover of the listener.
        #[arg(long, value_name = "blue|green")]
        to: Option<Color>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Runs the daemon: cutovers of the plans in --plans, a control API, metrics.
    /// SIGTERM stops it without rolling anything back; the next start resumes.
    Serve {
        #[arg(long, default_value = "127.0.0.1:7878", value_name = "ADDR")]
        listen: String,
        /// Directory of plans: NAME.toml is the plan NAME.
        #[arg(long, value_name = "DIR")]
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
    },
    /// Starts a cutover of plan NAME on the daemon; with --wait, streams its live log and exits with its code.
    Start {
        plan: String,
        /// A plan variable, KEY=VALUE (KEY in A-Z, 0-9, _); reaches hooks as CUTOVER_VAR_KEY.
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = crate::client::parse_var)]
        vars: Vec<(String, String)>,
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Lists the daemon's cutovers, newest first.
    List {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Streams a daemon cutover's live log until it ends; exits with its outcome's code.
    Watch {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Holds the bake clock of a daemon cutover (polling and automatic rollback go on).
    Pause {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Lets the bake clock run again (after drift, re-applies the plan's weights).
    Resume {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Ends the current bake of a daemon cutover now.
    Promote {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Current weights and the latest cutover's state.
    Status {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Checks the plan without calling AWS.
    Validate {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Replays the plan's criteria over CloudWatch history; writes nothing to the ALB.
    /// Exit 0: would not have rolled back; 3: would have; 2: usage or plan error.
    Backtest {
        #[arg(long, value_name = "FILE")]
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
    },
}

/// Where the daemon is, for the client commands.
#[derive(clap::Args, Debug, Clone)]
struct ServerArgs {
    /// The daemon's URL.
    #[arg(
        long,
        env = "CUTOVER_SERVER",
        value_name = "URL",
        default_value = "http://127.0.0.1:7878"
    )]
    server: String,
    /// The API token.
    #[arg(long, env = "CUTOVER_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    token: Option<String>,
    /// A file holding the API token.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

impl ServerArgs {
    fn client(&self) -> anyhow::Result<crate::client::Client> {
        let token = read_token(self.token_file.as_deref(), self.token.clone())?;
        crate::client::Client::new(&self.server, &token)
    }
}

/// The token from a file (trimmed) or the given value.
fn read_token(file: Option<&Path>, value: Option<String>) -> anyhow::Result<String> {
    match file {
        Some(f) => Ok(std::fs::read_to_string(f)
            .with_context(|| format!("reading the token file {}", f.display()))?
            .trim()
            .to_string()),
        None => Ok(value.unwrap_or_default().trim().to_string()),
    }
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Output {
    Text,
    Json,
}

/// Parses the arguments, runs the command and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cutover: cannot start the async runtime: {e}");
            return EXIT_ERROR;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            error!("{e:#}");
            EXIT_ERROR
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    // The SDK's own logs are noise in a live log unless asked for with CUTOVER_LOG.
    let filter = EnvFilter::try_from_env("CUTOVER_LOG").unwrap_or_else(|_| {
        EnvFilter::new(
            "info,aws_config=warn,aws_smithy_runtime=warn,aws_sdk_elasticloadbalancingv2=warn,aws_sdk_cloudwatch=warn",
        )
    });
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match format {
        LogFormat::Text => builder.compact().init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let state_dir = cli.state_dir.clone();
    match cli.command {
        Command::Validate { config } => Ok(match load_plan(&config) {
            Ok(plan) => {
                println!(
                    "{}: ok: {} steps: {}",
                    config.display(),
                    plan.steps.len(),
                    engine::describe_steps(&plan)
                );
                0
            }
            Err(code) => code,
        }),
        Command::Backtest { config, new, from, to } => crate::backtest::run(&config, new, &from, to.as_deref()).await,
        Command::Run { config, output } => {
            let Ok(plan) = load_plan(&config) else {
                return Ok(EXIT_USAGE);
            };
            let state = open_state(state_dir)?;
            let result = run(plan.clone(), state, output).await;
            if let Err(e) = &result {
                print_bare(&plan, output, Outcome::Error, format!("{e:#}"));
            }
            result
        }
        Command::Rollback {
            id,
            config,
            server,
            reason,
            to,
            output,
        } => match (id, config) {
            (Some(id), _) => {
                let v = server.client()?.action(&id, "rollback", Some(&reason)).await?;
                info!("traffic restored: {}; the daemon runs the undo chain", v["weights"]);
                println!("{v}");
                Ok(Outcome::RolledBackByOperator.exit_code())
            }
            (None, Some(config)) => {
                let Ok(plan) = load_plan(&config) else {
                    return Ok(EXIT_USAGE);
                };
                let state = open_state(state_dir)?;
                rollback(plan, state, reason, to, output).await
            }
            (None, None) => unreachable!("clap requires an id or --config"),
        },
        Command::Serve {
            listen,
            plans,
            token_file,
            tls_cert,
            tls_key,
        } => serve(listen, plans, token_file, tls_cert.zip(tls_key), state_dir).await,
        Command::Start {
            plan,
            vars,
            wait,
            server,
        } => {
            let client = server.client()?;
            let id = client.start(&plan, &vars).await?;
            println!("{id}");
            if !wait {
                return Ok(0);
            }
            Ok(watch_exit(client.watch(&id).await?))
        }
        Command::List { server, output } => {
            let v = server.client()?.list().await?;
            match output {
                Output::Json => println!("{v}"),
                Output::Text => crate::client::print_list(&v),
            }
            Ok(0)
        }
        Command::Watch { id, server } => Ok(watch_exit(server.client()?.watch(&id).await?)),
        Command::Pause { id, reason, server } => client_action(&server, &id, "pause", reason).await,
        Command::Resume { id, reason, server } => client_action(&server, &id, "resume", reason).await,
        Command::Promote { id, reason, server } => client_action(&server, &id, "promote", reason).await,
        Command::Status { config, output } => {
            let Ok(plan) = load_plan(&config) else {
                return Ok(EXIT_USAGE);
            };
            let state = open_state(state_dir)?;
            status(plan, state, output).await
        }
    }
}

/// The exit code of a watched cutover: its outcome's, or 1 if the stream ended without one.
fn watch_exit(outcome: Option<Outcome>) -> i32 {
    match outcome {
        Some(o) => o.exit_code(),
        None => {
            error!("the event stream ended before the cutover finished (the daemon stopped?)");
            EXIT_ERROR
        }
    }
}

async fn client_action(server: &ServerArgs, id: &str, action: &str, reason: Option<String>) -> anyhow::Result<i32> {
    let v = server.client()?.action(id, action, reason.as_deref()).await?;
    println!("{v}");
    Ok(0)
}

async fn serve(
    listen: String,
    plans: PathBuf,
    token_file: Option<PathBuf>,
    tls: Option<(PathBuf, PathBuf)>,
    state_dir: Option<PathBuf>,
) -> anyhow::Result<i32> {
    let token = read_token(token_file.as_deref(), std::env::var("CUTOVER_TOKEN").ok())?;
    if token.len() < 16 {
        error!(
            "refusing to start: no API token (or shorter than 16 characters); pass --token-file FILE or set CUTOVER_TOKEN"
        );
        return Ok(EXIT_USAGE);
    }
    if !plans.is_dir() {
        error!("--plans {}: not a directory", plans.display());
        return Ok(EXIT_USAGE);
    }
    let plans = std::path::absolute(&plans)?;
    let state = open_state(state_dir)?;
    let listener = std::net::TcpListener::bind(&listen).with_context(|| format!("binding {listen}"))?;
    let tls = match tls {
        Some((cert, key)) => {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            Some(
                axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                    .await
                    .with_context(|| format!("loading TLS certificate {} and key {}", cert.display(), key.display()))?,
            )
        }
        None => None,
    };
    let shutdown = async {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    };
    crate::daemon::serve(listener, tls, crate::daemon::Options { plans, state, token }, shutdown).await?;
    Ok(0)
}

/// Loads a plan; on error prints it (file, key, reason) and gives the exit code.
fn load_plan(path: &Path) -> Result<Plan, i32> {
    config::load(path).map_err(|e| {
        error!("invalid plan: {e}");
        EXIT_USAGE
    })
}

fn default_state_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("cutover");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/state/cutover")
}

fn open_state(flag: Option<PathBuf>) -> anyhow::Result<StateDir> {
    let dir = flag.unwrap_or_else(default_state_dir);
    StateDir::open(&dir).with_context(|| format!("opening the state directory {}", dir.display()))
}

async fn aws() -> crate::aws::Clients {
    crate::aws::Clients::load().await
}

/// SIGINT and SIGTERM, as a watch channel the engine can poll at any step.
fn signals() -> watch::Receiver<Option<String>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            warn!("cannot install signal handlers: SIGINT/SIGTERM will not roll back");
            return;
        };
        loop {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            if tx.borrow().is_some() {
                warn!(
                    "{name} again: already rolling back; traffic is restored first, then the undo chain runs to the end"
                );
            } else {
                warn!("{name}: rolling back");
                let _ = tx.send(Some(format!("interrupted by {name}")));
            }
        }
    });
    rx
}

async fn run(plan: Plan, state: StateDir, output: Output) -> anyhow::Result<i32> {
    let target = plan.alb.target_arn().to_string();
    // Held for the whole run: one process drives a listener (or rule) at a time, and
    // `cutover rollback` knows from it whether this run is still alive.
    let Some(_lock) = state.try_lock_target(&target)? else {
        return Ok(not_started(
            &plan,
            output,
            format!(
                "another cutover process holds {target} (lock in {})",
                state.root().display()
            ),
        ));
    };
    if let Some(prev) = state.latest(&target)? {
        let records = journal::read_all(&state.journal_path(&prev))?;
        let saga = Saga::replay(records.iter().map(|r| &r.event)).map_err(|e| anyhow!("journal of {prev}: {e}"))?;
        if saga.outcome().is_none() {
            return Ok(not_started(
                &plan,
                output,
                format!(
                    "cutover {prev} of this listener did not finish (its process died); traffic may be split. \
                 Run `cutover rollback --config {}` to put traffic back and finish it",
                    plan.path.display()
                ),
            ));
        }
    }

    let aws = aws().await;
    let alb = Alb::new(aws.elbv2, &plan.alb);
    let split = match alb.read().await {
        Ok(s) => s,
        Err(e) => {
            return Ok(not_started(
                &plan,
                output,
                format!("reading the weights of {target}: {e}"),
            ));
        }
    };
    let Some(live) = split.holder() else {
        return Ok(not_started(
            &plan,
            output,
            format!(
                "no colour holds all traffic, so there is no clean start: {split}. Use `cutover rollback --to blue|green` to choose one"
            ),
        ));
    };
    let new = live.other();
    let (id, journal) = state.create_new()?;
    info!(
        id = %id, service = %plan.service,
        "cutover {id} of {}: {live} is live ({split}), {new} is new; steps: {}",
        plan.service, engine::describe_steps(&plan)
    );
    state.save_plan(&id, &plan.source)?;
    journal.append(&engine::started_event(&id, &plan, live, split, Default::default()))?;
    state.set_latest(&target, &id)?;

    let metrics = CloudWatch::new(aws.cloudwatch, &plan.metrics, &plan.alb, new, &plan.rollback.alarms)
        .with_custom(&plan.rollback.metrics);
    let hooks = Processes::new(plan_dir(&plan));
    let interrupt = signals();
    let mut engine = Engine::open(plan, alb, metrics, hooks, journal, Clock::start())?;
    let verify_timeout = engine.plan.alb.verify_timeout;
    let outcome = match engine.drive(interrupt).await {
        Ok(outcome) => outcome,
        // The journal failed (disk full, corrupt): cutover cannot go on, but it must not leave
        // traffic split. Put it back on the live colour and say so.
        Err(e) => {
            error!("cannot go on: {e}; putting traffic back on {live}");
            return Ok(
                match traffic::set_and_verify(&engine.traffic, Split::all_on(live), verify_timeout).await {
                    Ok(split) => {
                        let reason =
                            format!("{e}; traffic restored to {live} ({split}) without running the undo chain");
                        error!("{reason}");
                        print_bare(&engine.plan, output, Outcome::Error, reason);
                        EXIT_ERROR
                    }
                    Err(e2) => {
                        let reason = format!("{e}; and traffic could not be confirmed back on {live}: {e2}");
                        error!("UNSAFE: {reason}");
                        print_bare(&engine.plan, output, Outcome::Unsafe, reason);
                        Outcome::Unsafe.exit_code()
                    }
                },
            );
        }
    };
    let records = journal::read_all(&state.journal_path(&id))?;
    print_summary(&summarize(&records), output);
    Ok(outcome.exit_code())
}

/// How long `cutover rollback` waits for a run that holds the listener's lock to either
/// finish the undo chain or let go of the lock (then this process finishes it).
const OWNER_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

async fn rollback(
    plan: Plan,
    state: StateDir,
    reason: String,
    to: Option<Color>,
    output: Output,
) -> anyhow::Result<i32> {
    let target = plan.alb.target_arn().to_string();
    // A run that holds the lock but has not yet journaled its cutover is about to: wait for it,
    // so that the rollback is about that cutover and not the previous one.
    let mut latest = state.latest(&target)?;
    if state.try_lock_target(&target)?.is_none() {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let unfinished = latest.as_ref().is_some_and(|id| !state.is_finished(id));
            if unfinished {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            latest = state.latest(&target)?;
        }
    }
    // The journal tells which colour was live. If it cannot be read, traffic is still restored
    // (to the colour its first line names, or --to): the journal must never stand in the way.
    let recorded = latest.as_ref().map(|id| {
        let path = state.journal_path(id);
        let records = journal::read_all(&path);
        let live = records
            .as_ref()
            .ok()
            .and_then(|r| journal::start_of(r))
            .map(|s| s.live_color);
        (id.clone(), live, records.err())
    });
    let live = match (recorded.as_ref().and_then(|r| r.1), to) {
        (Some(live), Some(to)) if live != to => {
            error!(
                "refusing: the latest cutover ({}) started with {live} live, and --to says {to}; drop --to to restore {live}",
                latest.unwrap_or_default()
            );
            return Ok(EXIT_USAGE);
        }
        (Some(live), _) => live,
        (None, Some(to)) => to,
        (None, None) => {
            match &recorded {
                Some((id, _, Some(e))) => error!("cannot read the journal of {id}: {e}; pass --to blue|green"),
                _ => error!(
                    "no cutover of {target} is recorded in {}: pass --to blue|green",
                    state.root().display()
                ),
            }
            return Ok(EXIT_USAGE);
        }
    };
    let journal = match &recorded {
        Some((id, _, None)) => match state.open_journal(id) {
            Ok(j) => Some((id.clone(), j)),
            Err(e) => {
                error!("cannot open the journal of {id}: {e}; restoring traffic without it");
                None
            }
        },
        Some((id, _, Some(e))) => {
            error!("the journal of {id} is unreadable ({e}); restoring traffic without it");
            None
        }
        None => None,
    };
    let aws = aws().await;
    let alb = Alb::new(aws.elbv2, &plan.alb);
    let started = std::time::Instant::now();
    let by = engine::whoami();
    let restored = match &journal {
        Some((_, j)) => engine::operator_rollback(j, &alb, live, plan.alb.verify_timeout, &reason, &by).await,
        None => traffic::set_and_verify(&alb, Split::all_on(live), plan.alb.verify_timeout)
            .await
            .map_err(engine::EngineError::Traffic),
    };
    let split = match restored {
        Ok(split) => split,
        Err(e) => {
            error!("UNSAFE: could not confirm traffic back on {live}: {e:#}");
            print_bare(
                &plan,
                output,
                Outcome::Unsafe,
                format!("could not confirm traffic back on {live}: {e:#}"),
            );
            return Ok(Outcome::Unsafe.exit_code());
        }
    };
    info!(
        "traffic restored to {live} in {}ms: {split}",
        started.elapsed().as_millis()
    );
    let Some((id, journal)) = journal else {
        print_bare(
            &plan,
            output,
            Outcome::RolledBackByOperator,
            format!("{reason} (no journal: traffic only)"),
        );
        return Ok(Outcome::RolledBackByOperator.exit_code());
    };

    // The undo chain: a run that is alive holds the lock and runs it within one poll. Wait for it
    // to finish or to let go of the lock; if it lets go (or was dead), finish the saga here.
    let deadline = std::time::Instant::now() + OWNER_WAIT;
    let lock = loop {
        if let Some(lock) = state.try_lock_target(&target)? {
            break Some(lock);
        }
        if state.is_finished(&id) || std::time::Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let outcome = match lock {
        None if state.is_finished(&id) => Outcome::RolledBackByOperator,
        None => {
            info!("the run driving cutover {id} is alive and runs the undo chain; `cutover status` shows its progress");
            Outcome::RolledBackByOperator
        }
        Some(_lock) => {
            // The undo chain follows the plan the cutover started with.
            let records = journal::read_all(&state.journal_path(&id))?;
            let plan = match engine::journaled_plan(&state, &id, &records) {
                Ok(p) => p,
                Err(e) => {
                    error!("traffic is back on {live}, but the undo chain cannot run: {e}");
                    return Ok(EXIT_ERROR);
                }
            };
            let metrics = CloudWatch::new(
                aws.cloudwatch,
                &plan.metrics,
                &plan.alb,
                live.other(),
                &plan.rollback.alarms,
            )
            .with_custom(&plan.rollback.metrics);
            let hooks = Processes::new(plan_dir(&plan));
            let mut engine = Engine::open(plan.clone(), alb, metrics, hooks, journal, Clock::start())?;
            // Signals are logged and ignored: nothing interrupts a rollback.
            let outcome = engine.drive(signals()).await?;
            if outcome == Outcome::Unsafe {
                outcome
            } else {
                Outcome::RolledBackByOperator
            }
        }
    };
    let records = journal::read_all(&state.journal_path(&id))?;
    print_summary(&summarize(&records), output);
    Ok(outcome.exit_code())
}

/// Whether the process that started a cutover is still alive (its pid, from the journal).
fn owner_alive(records: &[journal::Record]) -> bool {
    journal::start_of(records).is_some_and(|s| Path::new(&format!("/proc/{}", s.pid)).exists())
}

async fn status(plan: Plan, state: StateDir, output: Output) -> anyhow::Result<i32> {
    let target = plan.alb.target_arn().to_string();
    let aws = aws().await;
    let alb = Alb::new(aws.elbv2, &plan.alb);
    let split = alb
        .read()
        .await
        .with_context(|| format!("reading the weights of {target}"))?;
    let summary = match state.latest(&target)? {
        Some(id) => Some(summarize(&journal::read_all(&state.journal_path(&id))?)),
        None => None,
    };
    // Not the lock: taking it, even briefly, could make a concurrent `rollback` or `run` think
    // a live run holds it.
    let running = match state.latest(&target)? {
        Some(id) => {
            let records = journal::read_all(&state.journal_path(&id))?;
            !state.is_finished(&id) && owner_alive(&records)
        }
        None => false,
    };
    match output {
        Output::Json => {
            let v = serde_json::json!({
                "target_arn": target,
                "weights": split.percents(),
                "raw_weights": split,
                "running": running,
                "latest": summary,
            });
            println!("{v}");
        }
        Output::Text => {
            println!("{target}");
            println!("weights: {split}");
            match summary {
                Some(s) => {
                    let state = s.outcome.unwrap_or(if running {
                        "running"
                    } else {
                        "unfinished (process gone)"
                    });
                    println!(
                        "latest cutover: {} ({} → {}) {state}",
                        s.id,
                        color_str(s.live_color),
                        color_str(s.new_color)
                    );
                    if let Some(r) = &s.reason {
                        println!("reason: {r}");
                    }
                    for st in &s.steps {
                        println!("  {:<12} {:?}", st.label, st.status);
                    }
                }
                None => println!("latest cutover: none recorded in this state directory"),
            }
        }
    }
    Ok(0)
}

/// A cutover that did not start (before it had a journal): logs why, and prints the
/// summary when asked for JSON so that pipelines always get one.
fn not_started(plan: &Plan, output: Output, reason: String) -> i32 {
    error!("not started: {reason}");
    print_bare(plan, output, Outcome::NotStarted, reason);
    Outcome::NotStarted.exit_code()
}

/// A summary without a journal (`not_started` before one existed, or `error`).
fn print_bare(plan: &Plan, output: Output, outcome: Outcome, reason: String) {
    if output == Output::Json {
        let now = journal::now_rfc3339();
        let summary = engine::Summary {
            id: String::new(),
            service: plan.service.clone(),
            outcome: Some(outcome.as_str()),
            reason: Some(reason),
            live_color: None,
            new_color: None,
            final_weights: None,
            steps: vec![],
            started_at: Some(now.clone()),
            finished_at: Some(now),
        };
        print_summary(&summary, output);
    }
}

fn color_str(c: Option<Color>) -> &'static str {
    c.map(Color::as_str).unwrap_or("?")
}

fn plan_dir(plan: &Plan) -> PathBuf {
    plan.path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn print_summary(summary: &engine::Summary, output: Output) {
    match output {
        Output::Json => println!("{}", serde_json::to_string(summary).expect("summary serializes")),
        Output::Text => println!(
            "{} {}: {} — {} (final weights {})",
            summary.id,
            summary.outcome.unwrap_or("unfinished"),
            summary.service,
            summary.reason.as_deref().unwrap_or(""),
            summary
                .final_weights
                .as_ref()
                .map(|w| w.to_string())
                .unwrap_or_default()
        ),
    }
}
