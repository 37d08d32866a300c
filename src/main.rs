//! `sigv4-proxy`: parse the command line, set up logging, validate the configuration (exit 64
//! with the reason when invalid), run until SIGTERM/SIGINT. `sigv4-proxy check` runs the
//! diagnosis instead and exits 0 when every step passed, 1 otherwise; `health` asks a running
//! proxy's admin listener; `completions` and `man` print what packagers install.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use sigv4_proxy::cli::{CheckArgs, Cli, Command, HealthArgs, LogFormat};
use sigv4_proxy::config_file::Settings;
use tracing_subscriber::EnvFilter;

/// EX_USAGE from sysexits.h: the configuration is wrong.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
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
    let settings = match Settings::load(&argv) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("sigv4-proxy: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_tracing(settings.verbose, settings.log_format);
    let settings = match sigv4_proxy::with_egress_proxy(settings) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("sigv4-proxy: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("sigv4-proxy: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(sigv4_proxy::run(
        argv,
        settings,
        sigv4_proxy::signals::shutdown(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sigv4-proxy: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `sigv4-proxy check`: the report goes to stdout; logs (warnings unless -v) to stderr.
fn check(args: &CheckArgs) -> ExitCode {
    init_tracing_with(
        args.proxy.verbose,
        args.proxy.log_format,
        "warn,aws_config=error,aws_runtime=error,aws_smithy_runtime=error",
    );
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("sigv4-proxy: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    if runtime.block_on(sigv4_proxy::check::run(args, &mut stdout)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
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

fn init_tracing(verbose: u8, format: LogFormat) {
    init_tracing_with(
        verbose,
        format,
        "info,aws_config=warn,aws_smithy_runtime=warn,rustls=warn,hyper=warn",
    );
}

fn init_tracing_with(verbose: u8, format: LogFormat, quiet: &str) {
    let default = match verbose {
        0 => quiet,
        1 => "debug,hyper=info,h2=info,rustls=info,aws_smithy_runtime=info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
