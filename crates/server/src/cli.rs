//! The commands of `roost`.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use roost_core::auth::Registration;
use roost_core::model::Role;

use crate::config::{Config, Overrides};

#[derive(Debug, Parser)]
#[command(
    name = "roost",
    version,
    about = "Self-hosted voice, video and chat server"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// A TOML configuration file (also ROOST_CONFIG).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Where the SQLite database and generated secret live (default ./roost-data).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// sqlite://... or postgres://... (default: SQLite in the data directory).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// redis://... to serve as one node of several (default: alone).
    #[arg(long, global = true)]
    pub redis_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free one).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate and print the effective configuration, secrets redacted.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account; the password is read from the first line of stdin.
    Create {
        #[arg(long)]
        email: String,
        /// user, admin or super_admin.
        #[arg(long, default_value = "user")]
        role: String,
        /// Default: derived from the email's local part.
        #[arg(long)]
        username: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
    },
}

impl Cli {
    fn load_config(&self, listen: Option<String>) -> anyhow::Result<Config> {
        let overrides = Overrides {
            listen,
            data_dir: self.global.data_dir.clone(),
            database_url: self.global.database_url.clone(),
            redis_url: self.global.redis_url.clone(),
        };
        Config::load(self.global.config.as_deref(), &overrides)
    }
}

/// Runs the parsed command.
pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve { listen } => {
            let config = cli.load_config(listen.clone())?;
            crate::init_logging(&config);
            let shutdown = crate::shutdown_signal()?;
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("listening on {}", config.listen))?;
            crate::run(config, listener, shutdown).await
        }
        Command::Migrate => {
            let config = cli.load_config(None)?;
            crate::init_logging(&config);
            let store = crate::open_store(&config).await?;
            store.close().await;
            println!("migrations applied");
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            let config = cli.load_config(None)?;
            print!("{}", config.redacted_toml()?);
            eprintln!("configuration is valid");
            Ok(())
        }
        Command::User {
            command:
                UserCommand::Create {
                    email,
                    role,
                    username,
                    display_name,
                },
        } => {
            let config = cli.load_config(None)?;
            crate::init_logging(&config);
            let role: Role = role
                .parse()
                .map_err(|_| anyhow::anyhow!("--role must be user, admin or super_admin"))?;
            let password = read_password()?;
            let username = match username {
                Some(u) => u.clone(),
                None => email.split('@').next().unwrap_or_default().to_owned(),
            };
            let store = crate::open_store(&config).await?;
            let core = crate::build_core(&config, store.clone()).await?;
            let user = core
                .auth
                .create_user(
                    Registration {
                        email: email.clone(),
                        username,
                        password,
                        display_name: display_name.clone(),
                    },
                    role,
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            store.close().await;
            println!("{}", serde_json::to_string(&user)?);
            Ok(())
        }
    }
}

/// The first line of stdin, without its line ending; never from argv.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("give the password on stdin, e.g. `printf '%s\\n' \"$PASSWORD\" | roost user create ...`");
    }
    Ok(password)
}
