//! The command line: the thin edge between a shell and the library.
//!
//! It parses flags ([`args`]), loads the plan, opens the store, hands over to the engine,
//! the daemon or its client, and maps outcomes to the documented exit codes
//! (0 promoted, 2 plan/usage, 3 rolled back, 4 rolled back by an operator,
//! 5 not started, 6 unsafe, 1 anything else).
//!
//! * [`args`]: the flags and subcommands;
//! * `run.rs`: `run` and `rollback --config`, the commands that drive a cutover;
//! * `status.rs`: `status`, and the summaries every command prints;
//! * `offline.rs`: the commands that call no AWS: `validate`, `prune`, `completions`, `man`.

pub mod args;
mod offline;
mod run;
mod status;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::{self, Plan};
use crate::engine;
use crate::engine::operator::{self, Control};
use crate::journal::{StateDir, Store};
use crate::saga::Outcome;
use args::{Cli, Command, ControlArgs, LogFormat, Output};

/// Exit code of a command that did what it was asked (`rollback`: traffic verified on the live
/// colour, and the undo chain finished or handed to the process that owns the cutover).
pub const EXIT_OK: i32 = 0;
/// Exit code: usage or plan error; nothing was changed.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: a rollback could not be confirmed; the traffic split is unknown or mixed.
pub const EXIT_UNSAFE: i32 = 6;
/// Exit code: any other error.
pub const EXIT_ERROR: i32 = 1;

/// Parses the arguments, runs the command and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    init_logging(cli.log_format, cli.color);
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

fn init_logging(format: LogFormat, color: args::ColorWhen) {
    use std::io::IsTerminal;
    let ansi = crate::live_log::output::wants_color(
        color.into(),
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
    );
    crate::live_log::output::init(format == LogFormat::Json, ansi);
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let state_dir = StoreArgs {
        dir: cli.state_dir.clone(),
        url: cli.store.clone(),
    };
    match cli.command {
        Command::Store {
            action: args::StoreAction::Init,
        } => store_init(state_dir).await,
        Command::Validate { config, output } => Ok(offline::validate(&config, output)),
        Command::Completions { shell } => Ok(offline::completions(shell)),
        Command::Health { server } => Ok(match crate::daemon::client::health(&server).await {
            Ok(()) => {
                println!("{server}: healthy");
                EXIT_OK
            }
            Err(e) => {
                error!("unhealthy: {e:#}");
                EXIT_ERROR
            }
        }),
        Command::Man { dir } => offline::man(dir.as_deref()),
        Command::Prune { older_than, dry_run } => {
            let store = open_store(state_dir.clone()).await?;
            offline::prune(store, older_than, dry_run).await
        }
        Command::Backtest {
            config,
            new,
            from,
            to,
            output,
        } => crate::backtest::run(&config, new, &from, to.as_deref(), output == Output::Json).await,
        Command::Run { config, output } => {
            let Ok(plan) = load_plan(&config) else {
                return Ok(EXIT_USAGE);
            };
            let store = open_store(state_dir.clone()).await?;
            let result = run::run(plan.clone(), store, output).await;
            if let Err(e) = &result {
                status::print_bare(&plan, output, Outcome::Error, format!("{e:#}"));
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
            (Some(id), _) => match server.client()?.action(&id, "rollback", Some(&reason)).await {
                Ok(v) => {
                    match output {
                        Output::Json => println!("{v}"),
                        Output::Text => println!(
                            "{id}: traffic restored ({}); the daemon runs the undo chain",
                            serde_json::from_value::<crate::color::Percents>(v["weights"].clone())
                                .map(|w| w.to_string())
                                .unwrap_or_else(|_| v["weights"].to_string())
                        ),
                    }
                    Ok(EXIT_OK)
                }
                Err(e) => match e.downcast_ref::<crate::daemon::client::ApiFailure>() {
                    Some(f) if f.is_unsafe() => {
                        error!("{f}");
                        Ok(EXIT_UNSAFE)
                    }
                    _ => Err(e),
                },
            },
            (None, Some(config)) => {
                let Ok(plan) = load_plan(&config) else {
                    return Ok(EXIT_USAGE);
                };
                let store = open_store(state_dir.clone()).await?;
                run::rollback(plan, store, reason, to, output).await
            }
            (None, None) => unreachable!("clap requires an id or --config"),
        },
        Command::Serve {
            listen,
            plans,
            token_file,
            tls_cert,
            tls_key,
            name,
            retain,
            budget,
        } => {
            // Before any AWS call: every client of the process paces its calls by it.
            let budget = budget.unwrap_or_default();
            crate::budget::install(&budget);
            info!("AWS API budget (calls a second / burst): {}", budget.describe());
            serve(
                listen,
                plans,
                token_file,
                tls_cert.zip(tls_key),
                state_dir,
                name,
                retain,
            )
            .await
        }
        Command::Start {
            plan,
            vars,
            wait,
            server,
            output,
        } => {
            let client = server.client()?;
            let id = client.start(&plan, &vars).await?;
            // The id at once, on its own line: a pipeline that loses the stream re-attaches with it.
            match output {
                Output::Json => println!("{}", serde_json::json!({ "id": id })),
                Output::Text => println!("{id}"),
            }
            if !wait {
                return Ok(0);
            }
            watch(&client, &id, output).await
        }
        Command::List { server, output } => {
            let list = server.client()?.list().await?;
            match output {
                Output::Json => println!("{}", serde_json::json!({ "cutovers": list })),
                Output::Text => crate::daemon::client::print_list(&list),
            }
            Ok(0)
        }
        Command::Watch { id, server, output } => watch(&server.client()?, &id, output).await,
        Command::Pause(a) => control(a, Control::Pause, state_dir).await,
        Command::Resume(a) => control(a, Control::Resume, state_dir).await,
        Command::Promote(a) => control(a, Control::Promote, state_dir).await,
        Command::Approve(a) => control(a, Control::Approve, state_dir).await,
        Command::Reject(a) => control(a, Control::Reject, state_dir).await,
        Command::Report {
            id,
            config,
            local_id,
            output,
            format,
            server,
        } => report(id, config, local_id, output, format.into(), server, state_dir).await,
        Command::Status { config, output } => {
            let Ok(plan) = load_plan(&config) else {
                return Ok(EXIT_USAGE);
            };
            let store = open_store(state_dir.clone()).await?;
            status::status(plan, store, output).await
        }
    }
}

/// `cutover report`: a daemon's cutover (`ID --server URL`, rendered by the daemon), or one in the
/// state directory (`--id ID`, or the latest of the plan's target with `--config`).
async fn report(
    id: Option<String>,
    config: Option<PathBuf>,
    local_id: Option<String>,
    output: PathBuf,
    format: crate::report::Format,
    server: args::ServerArgs,
    state_dir: StoreArgs,
) -> anyhow::Result<i32> {
    let text = match (id, local_id, config) {
        (Some(id), _, _) => {
            let token = args::read_token(server.token_file.as_deref(), server.token.clone())?;
            crate::report::client::fetch(&server.server, &token, &id, format).await?
        }
        (None, local_id, config) => {
            let store = open_store(state_dir).await?;
            let id = match (local_id, config) {
                (Some(id), _) => id,
                (None, Some(config)) => {
                    let Ok(plan) = load_plan(&config) else {
                        return Ok(EXIT_USAGE);
                    };
                    let target = plan.alb.target_arn().to_string();
                    let Some(id) = store.latest(&target).await? else {
                        error!("no cutover of {target} is recorded in the {}", store.describe());
                        return Ok(EXIT_ERROR);
                    };
                    id
                }
                (None, None) => unreachable!("clap requires an id, --id or --config"),
            };
            let report = crate::report::load(&store, &id)
                .await
                .with_context(|| format!("reading cutover {id} in the {}", store.describe()))?;
            crate::report::render(&report, format)
        }
    };
    if output.as_os_str() == "-" {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .context("writing the report to stdout")?;
        stdout.flush().context("writing the report to stdout")?;
    } else {
        std::fs::write(&output, &text).with_context(|| format!("writing the report to {}", output.display()))?;
        info!("{} report written to {}", format.as_str(), output.display());
    }
    Ok(EXIT_OK)
}

/// `watch` (and `start --wait`): the live log until the end; with `--output json` the summary
/// on stdout; the exit code is the outcome's, or 1 if the stream ended without one.
async fn watch(client: &crate::daemon::client::Client, id: &str, output: Output) -> anyhow::Result<i32> {
    let outcome = client.watch(id).await?;
    if output == Output::Json {
        match client.get(id).await {
            Ok(state) => status::print_summary(&state.summary, output),
            Err(e) => warn!("cannot read the summary of {id}: {e:#}"),
        }
    }
    Ok(match outcome {
        Some(o) => o.exit_code(),
        None => {
            error!("the event stream ended before the cutover finished (the daemon stopped?)");
            EXIT_ERROR
        }
    })
}

/// `pause`, `resume` or `promote`: through the daemon (`ID`), or through the journal of the
/// latest cutover of the plan's target (`--config`), which the process that owns it acts on
/// within a second.
async fn control(a: ControlArgs, kind: Control, state_dir: StoreArgs) -> anyhow::Result<i32> {
    let Some(config) = a.config else {
        let id = a.id.expect("clap requires an id or --config");
        let v = a
            .server
            .client()?
            .action(&id, kind.as_str(), a.reason.as_deref())
            .await?;
        match a.output {
            Output::Json => println!("{v}"),
            Output::Text => match serde_json::from_value::<crate::state::CutoverState>(v) {
                Ok(state) => println!(
                    "{id}: {} done; now {}{}",
                    kind.as_str(),
                    state.state_word(),
                    state.step.map(|s| format!(" at {s}")).unwrap_or_default()
                ),
                Err(_) => println!("{id}: {} done", kind.as_str()),
            },
        }
        return Ok(EXIT_OK);
    };
    let Ok(plan) = load_plan(&config) else {
        return Ok(EXIT_USAGE);
    };
    let store = open_store(state_dir.clone()).await?;
    let target = plan.alb.target_arn().to_string();
    let Some(id) = store.latest(&target).await? else {
        error!("no cutover of {target} is recorded in the {}", store.describe());
        return Ok(EXIT_ERROR);
    };
    let journal = crate::journal::Journal::new(store, &id);
    // An approval is the person's; other actions also say where they came from.
    let by = match kind {
        Control::Approve | Control::Reject => engine::principal(),
        _ => engine::whoami(),
    };
    match operator::control(&journal, kind, &by, a.reason.as_deref()).await {
        Ok(_) => {
            info!(
                "{} of cutover {id} journaled; the process that drives it acts on it within a second",
                kind.as_str()
            );
            Ok(EXIT_OK)
        }
        Err(e) => {
            error!("{e}");
            Ok(EXIT_ERROR)
        }
    }
}

async fn serve(
    listen: String,
    plans: PathBuf,
    token_file: Option<PathBuf>,
    tls: Option<(PathBuf, PathBuf)>,
    state_dir: StoreArgs,
    name: Option<String>,
    retain: Option<std::time::Duration>,
) -> anyhow::Result<i32> {
    if let Some(file) = &token_file
        && let Err(e) = args::check_token_file(file)
    {
        error!("refusing to start: {e:#}");
        return Ok(EXIT_USAGE);
    }
    let tokens = match token_file.as_deref() {
        Some(file) => {
            let text =
                std::fs::read_to_string(file).with_context(|| format!("reading the token file {}", file.display()))?;
            args::parse_tokens(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
        }
        None => {
            let token = std::env::var("CUTOVER_TOKEN").unwrap_or_default().trim().to_string();
            args::parse_tokens(&token)
        }
    };
    let tokens = match tokens {
        Ok(t) => t,
        Err(e) => {
            error!("refusing to start: {e:#}; pass --token-file FILE or set CUTOVER_TOKEN");
            return Ok(EXIT_USAGE);
        }
    };
    if !plans.is_dir() {
        error!("--plans {}: not a directory", plans.display());
        return Ok(EXIT_USAGE);
    }
    let plans = std::path::absolute(&plans)?;
    let store = open_store(state_dir.clone()).await?;
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
    let name = name.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "daemon".into())
    });
    crate::daemon::serve(
        listener,
        tls,
        crate::daemon::Options {
            name,
            plans,
            store,
            tokens,
            retain,
        },
        shutdown,
    )
    .await?;
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

/// Where journals and leases live: `--store URL`, else `--state-dir DIR` (or its default).
#[derive(Debug, Clone)]
struct StoreArgs {
    dir: Option<PathBuf>,
    url: Option<String>,
}

/// The journal store: the shared store `--store` names, or the state directory.
async fn open_store(args: StoreArgs) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = &args.url {
        let conf = crate::aws::load().await;
        return crate::journal::open(url, &conf)
            .await
            .with_context(|| format!("opening the store {url}"));
    }
    let dir = args.dir.unwrap_or_else(default_state_dir);
    let state = StateDir::open(&dir).with_context(|| format!("opening the state directory {}", dir.display()))?;
    Ok(Arc::new(state))
}

/// `cutover store init`: the shared store's table, created once.
async fn store_init(args: StoreArgs) -> anyhow::Result<i32> {
    let Some(url) = args.url else {
        error!("store init needs --store dynamodb://TABLE (or CUTOVER_STORE): the state directory needs no setup");
        return Ok(EXIT_USAGE);
    };
    let conf = crate::aws::load().await;
    let table = crate::journal::dynamo::table_of(&url).with_context(|| format!("--store {url}"))?;
    crate::journal::dynamo::init(&conf, table)
        .await
        .with_context(|| format!("creating the table of {url}"))?;
    println!("{url}: ready");
    Ok(EXIT_OK)
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
