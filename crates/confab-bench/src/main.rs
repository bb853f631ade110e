//! `confab-bench`: runs one scenario against an XMPP server and prints a summary on stdout
//! (and the results as JSON with `--json FILE`). See `docs/performance.md`.

use clap::Parser;
use confab_bench::{run, BenchError, Cli};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("confab-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&cli.scenario)) {
        Ok(report) => {
            print!("{}", report.summary());
            if let Some(path) = &cli.scenario.common().json {
                if let Err(e) = std::fs::write(path, report.to_json() + "\n") {
                    eprintln!("confab-bench: writing {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e @ BenchError::Usage(_)) => {
            eprintln!("confab-bench: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("confab-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
