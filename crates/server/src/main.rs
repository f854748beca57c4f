use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = roost::cli::Cli::parse();
    match roost::cli::execute(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roost: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
