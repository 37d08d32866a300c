//! `sigv4-proxy`: parse the command line, set up logging, validate the configuration (exit 64
//! with the reason when invalid), run until SIGTERM/SIGINT. `sigv4-proxy check` runs the
//! diagnosis instead and exits 0 when every step passed, 1 otherwise; `health` asks a running
//! proxy's admin listener; `completions` and `man` print what packagers install.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use sigv4_proxy::app::{self, Environment};
use sigv4_proxy::cli::{CheckArgs, Cli, Command, HealthArgs, LogFormat, PolicyCommand};
use sigv4_proxy::config::Config;
use sigv4_proxy::error::StartError;
use sigv4_proxy::logging::LogFlusher;

/// EX_USAGE from sysexits.h: the configuration is wrong.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // --help, --version and malformed flags end here, with clap's own messages.
    let cli = Cli::parse_from(&argv);
    match cli.command {
        Some(Command::Check(args)) => return check(&args),
        Some(Command::Health(args)) => return health(&args),
        Some(Command::Completions { shell }) => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "sigv4-proxy",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Some(Command::Policy(PolicyCommand::Explain(args))) => {
            return policy_report(sigv4_proxy::policy_tool::explain(
                &args,
                &mut std::io::stdout(),
            ))
        }
        Some(Command::Policy(PolicyCommand::Check(args))) => {
            return policy_report(sigv4_proxy::policy_tool::check(
                &args,
                &mut std::io::stdout(),
            ))
        }
        Some(Command::Man) => {
            return match sigv4_proxy::cli::render_man(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("sigv4-proxy: {err}");
                    ExitCode::FAILURE
                }
            };
        }
        None => {}
    }
    let config = match Config::load(&argv) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("sigv4-proxy: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let _log_writer = init_tracing(config.verbose, config.log_format);
    // The main runtime accepts connections and runs the admin listener, credential refreshes
    // and reloads; the connections themselves are served by the workers (`workers.rs`).
    sigv4_proxy::workers::configure(config.workers);
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let run = app::run(
        argv,
        config,
        Environment::from_process(),
        sigv4_proxy::signals::shutdown(),
    );
    match runtime.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sigv4-proxy: {err}");
            match err {
                // A configuration only the AWS side could complete (the region), or a file it
                // names that cannot be loaded, is still a configuration error.
                StartError::Config(_) => ExitCode::from(EXIT_CONFIG),
                StartError::Listen { .. } | StartError::Setup(_) => ExitCode::FAILURE,
            }
        }
    }
}

/// The one runtime a command runs on (a current-thread one: the proxy's connections are served
/// by the workers).
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            eprintln!("sigv4-proxy: cannot start the runtime: {err}");
            ExitCode::FAILURE
        })
}

/// `sigv4-proxy check`: the report goes to stdout; logs (warnings unless -v) to stderr.
fn check(args: &CheckArgs) -> ExitCode {
    let _log_writer = sigv4_proxy::logging::init(
        args.proxy.verbose,
        args.proxy.log_format,
        "warn,aws_config=error,aws_runtime=error,aws_smithy_runtime=error",
    );
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let mut stdout = std::io::stdout();
    if runtime.block_on(sigv4_proxy::check::run(args, &mut stdout)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `sigv4-proxy policy explain|check`: 0 when allowed (no errors), 1 when denied (errors), 64
/// when the request or a file cannot be read.
fn policy_report(result: Result<bool, sigv4_proxy::policy_tool::UsageError>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("sigv4-proxy: {err}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// `sigv4-proxy health`: one line on stdout either way (Docker keeps it in `docker inspect`).
fn health(args: &HealthArgs) -> ExitCode {
    let timeout = match sigv4_proxy::config::parse_duration("--timeout", &args.timeout) {
        Ok(timeout) => timeout,
        Err(err) => {
            eprintln!("sigv4-proxy: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match sigv4_proxy::health::probe(&args.url, timeout) {
        Ok(answer) if answer.status == 200 => {
            println!("{} → 200 {}", args.url, answer.body);
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            println!("{} → {} {}", args.url, answer.status, answer.body);
            ExitCode::FAILURE
        }
        Err(err) => {
            println!("{}: {err}", args.url);
            ExitCode::FAILURE
        }
    }
}

/// Logging for the proxy itself: the access log and what it does, quieter for its libraries.
fn init_tracing(verbose: u8, format: LogFormat) -> LogFlusher {
    sigv4_proxy::logging::init(
        verbose,
        format,
        "info,aws_config=warn,aws_smithy_runtime=warn,rustls=warn,hyper=warn",
    )
}

/// At most two malloc arenas (as `MALLOC_ARENA_MAX=2` would), unless the environment already
/// sets it: glibc otherwise keeps an arena per thread that touched the heap, and the memory
/// freed after a burst of large bodies stays in them. Measured: peak RSS over 32 MiB bulks
/// 22.3 → 18.9 MiB, after load 33.2 → 24.9 MiB, with no throughput change.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only tunes the allocator; it runs before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
