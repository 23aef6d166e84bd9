//! The `betomail` command line: `serve` and the admin subcommands. Admin
//! commands work on the same store as a running server.

use crate::app::App;
use crate::auth::hasher::hash_now;
use crate::auth::HashPolicy;
use crate::config::{Config, Protocol};
use crate::smtp::address::{check_account_address, AccountAddrError};
use crate::store::{Store, StoreError};
use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand};
use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

#[derive(Parser)]
#[command(name = "betomail", version, about = "An ISP mail system in one binary")]
struct Cli {
    /// The TOML configuration file; without it, the embedded default.
    #[arg(long, global = true, env = "BETOMAIL_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every configured listener and the queue runner.
    Serve,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCmd),
    /// Deliver a message from stdin into a local mailbox (an MDA).
    Deliver {
        #[arg(long)]
        to: String,
        /// Envelope sender, written as Return-Path.
        #[arg(long)]
        from: Option<String>,
    },
    /// Show or clear POP mailbox locks.
    #[command(subcommand)]
    Lock(LockCmd),
    /// Show POP-before-SMTP relay grants.
    Grants,
    /// The forward/reverse DNS check of an IP, as the POP servers do it.
    CheckDns {
        ip: IpAddr,
        /// Print the JSON of the portal's API instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Inspect and manage the outbound queue.
    #[command(subcommand)]
    Queue(crate::delivery::queue_cli::QueueCmd),
}

#[derive(Args)]
struct PasswordStdin {
    /// Read the password from stdin instead of generating one.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create an account; without --password-stdin a password is generated and printed once.
    Add {
        name: String,
        #[command(flatten)]
        pw: PasswordStdin,
        /// Address if not NAME@<first local domain>.
        #[arg(long)]
        address: Option<String>,
        /// May use the portal's operator pages.
        #[arg(long)]
        admin: bool,
    },
    /// Set a new password (read from stdin).
    Passwd {
        name: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Delete an account and its mailbox.
    Del {
        name: String,
    },
    List,
    Show {
        name: String,
    },
    /// Set the APOP / CRAM-MD5 shared secret (stdin), or remove it with --clear.
    Secret {
        name: String,
        #[arg(long, conflicts_with = "clear")]
        secret_stdin: bool,
        #[arg(long)]
        clear: bool,
    },
    /// Issue a separate SMTP AUTH password (generated unless --password-stdin), or --clear it.
    SmtpPassword {
        name: String,
        #[command(flatten)]
        pw: PasswordStdin,
        #[arg(long, conflicts_with = "password_stdin")]
        clear: bool,
    },
    Disable {
        name: String,
    },
    Enable {
        name: String,
    },
}

#[derive(Subcommand)]
enum LockCmd {
    List,
    /// Remove an account's lock (a session holding it loses it).
    Clear {
        name: String,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BETOMAIL_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match &cli.config {
        Some(path) => Config::load(path),
        None => Ok(Config::embedded_default()),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("betomail: {e}");
            return ExitCode::from(78); // EX_CONFIG
        }
    };
    match run(cli.command, config) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("betomail: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => {
            let rt = runtime()?;
            rt.block_on(async {
                let app = App::new(config)?;
                crate::server::serve(app).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::User(cmd) => user(cmd, &config),
        Command::Deliver { to, from } => Ok(deliver(&config, &to, from.as_deref())),
        Command::Lock(cmd) => lock(cmd, &config),
        Command::Grants => {
            let store = App::open_store(&config)?;
            for g in store.grants.list(SystemTime::now())? {
                println!("{}\t{}\tuntil {}", g.ip, g.account, fmt_time(g.until));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckDns { ip, json } => check_dns(&config, ip, json),
        Command::Queue(cmd) => crate::delivery::queue_cli::run(cmd, &config),
    }
}

pub fn fmt_time(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Local>::from(t)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn read_stdin_secret(what: &str) -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .with_context(|| format!("reading the {what} from stdin"))?;
    let s = s.trim_end_matches(['\r', '\n']).to_string();
    if s.is_empty() {
        bail!("the {what} on stdin is empty");
    }
    if s.chars().any(|c| c.is_control()) {
        bail!("the {what} must be one line without control characters");
    }
    Ok(s)
}

/// 16 characters from an alphabet without look-alikes (0/O, 1/l).
pub fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Issues a generated separate SMTP AUTH password (SEED-3) and returns it,
/// to be shown once (CLI and portal).
pub fn issue_smtp_password(
    store: &Store,
    policy: &HashPolicy,
    name: &str,
) -> Result<String, StoreError> {
    let pw = generate_password();
    store
        .accounts
        .set_smtp_password(name, Some(&hash_now(policy, &pw)))?;
    Ok(pw)
}

/// Replaces an account's password with a generated one and returns it, to
/// be shown once (the operator's reset).
pub fn reset_password(
    store: &Store,
    policy: &HashPolicy,
    name: &str,
) -> Result<String, StoreError> {
    let pw = generate_password();
    store.accounts.set_password(name, &hash_now(policy, &pw))?;
    Ok(pw)
}

/// Login names are Maildir folder names too: a safe, short, lower-case set.
pub fn valid_account_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c))
}

/// Creates an account; returns the password that was generated, if any.
pub fn add_account(
    store: &Store,
    config: &Config,
    name: &str,
    address: Option<&str>,
    password: Option<&str>,
) -> anyhow::Result<Option<String>> {
    if !valid_account_name(name) {
        bail!(
            "account name {name:?} must be 1-64 of a-z 0-9 . _ - starting with a letter or digit"
        );
    }
    let address = match address {
        Some(a) => a.to_ascii_lowercase(),
        None => format!("{name}@{}", config.primary_domain()),
    };
    match check_account_address(&address, |d| config.is_local_domain(d)) {
        Ok(()) => {}
        Err(AccountAddrError::NotLocal) => bail!("address {address:?} is not at a local domain"),
        Err(AccountAddrError::Invalid) => bail!(
            "address {address:?} is not a valid address: local@domain, the local part \
             an RFC 5321 dot-string without quotes, spaces, brackets, '%' or '!'"
        ),
    }
    let generated = password.is_none().then(generate_password);
    let pw = password.or(generated.as_deref()).unwrap_or_default();
    store
        .accounts
        .add(name, &address, &hash_now(&config.auth.policy(), pw))?;
    Ok(generated)
}

fn find(store: &Store, name: &str) -> anyhow::Result<crate::store::Account> {
    store
        .accounts
        .find(name)?
        .ok_or_else(|| anyhow!("no account {name:?}"))
}

fn user(cmd: UserCmd, config: &Config) -> anyhow::Result<ExitCode> {
    let store = App::open_store(config)?;
    let policy = config.auth.policy();
    match cmd {
        UserCmd::Add {
            name,
            pw,
            address,
            admin,
        } => {
            let password = pw
                .password_stdin
                .then(|| read_stdin_secret("password"))
                .transpose()?;
            let generated = add_account(
                &store,
                config,
                &name,
                address.as_deref(),
                password.as_deref(),
            )?;
            if admin {
                store.accounts.set_admin(&name, true)?;
            }
            let account = find(&store, &name)?;
            println!("added {} <{}>", account.name, account.address);
            if let Some(p) = generated {
                println!("password: {p}");
            }
        }
        UserCmd::Passwd { name, .. } => {
            let account = find(&store, &name)?;
            let pw = read_stdin_secret("password")?;
            store
                .accounts
                .set_password(&account.name, &hash_now(&policy, &pw))?;
            println!("password changed for {}", account.name);
        }
        UserCmd::Del { name } => {
            let account = find(&store, &name)?;
            store.accounts.delete(&account.name)?;
            store.mail.remove_mailbox(&account)?;
            println!("deleted {} and its mailbox", account.name);
        }
        UserCmd::List => {
            for a in store.accounts.list()? {
                let mut flags = Vec::new();
                if a.disabled {
                    flags.push("disabled");
                }
                if a.admin {
                    flags.push("admin");
                }
                if a.secret.is_some() {
                    flags.push("secret");
                }
                if a.smtp_password_hash.is_some() {
                    flags.push("smtp-password");
                }
                println!("{}\t{}\t{}", a.name, a.address, flags.join(","));
            }
        }
        UserCmd::Show { name } => {
            let a = find(&store, &name)?;
            let msgs = store.mail.list(&a)?;
            let yes_no = |b: bool| if b { "yes" } else { "no" };
            println!("name:           {}", a.name);
            println!("address:        {}", a.address);
            println!("created:        {}", fmt_time(a.created));
            println!("disabled:       {}", yes_no(a.disabled));
            println!("admin:          {}", yes_no(a.admin));
            println!("apop/cram-md5:  {}", yes_no(a.secret.is_some()));
            println!("smtp password:  {}", yes_no(a.smtp_password_hash.is_some()));
            println!(
                "messages:       {} ({} octets)",
                msgs.len(),
                msgs.iter().map(|m| m.size).sum::<u64>()
            );
            if let Some(l) = store.locks.holder(&a.name)? {
                println!("locked since:   {}", fmt_time(l.acquired));
            }
        }
        UserCmd::Secret {
            name,
            secret_stdin,
            clear,
        } => {
            let a = find(&store, &name)?;
            if clear {
                store.accounts.set_secret(&a.name, None)?;
                println!("shared secret removed for {}", a.name);
            } else if secret_stdin {
                let s = read_stdin_secret("secret")?;
                store.accounts.set_secret(&a.name, Some(&s))?;
                println!("shared secret set for {} (APOP, CRAM-MD5)", a.name);
            } else {
                bail!("give --secret-stdin (the secret on stdin) or --clear");
            }
        }
        UserCmd::SmtpPassword { name, pw, clear } => {
            let a = find(&store, &name)?;
            if clear {
                store.accounts.set_smtp_password(&a.name, None)?;
                println!("SMTP AUTH password removed for {}", a.name);
            } else {
                let generated = if pw.password_stdin {
                    let pw = read_stdin_secret("password")?;
                    store
                        .accounts
                        .set_smtp_password(&a.name, Some(&hash_now(&policy, &pw)))?;
                    None
                } else {
                    Some(issue_smtp_password(&store, &policy, &a.name)?)
                };
                println!("SMTP AUTH password set for {}", a.name);
                if let Some(pw) = generated {
                    println!("smtp password: {pw}");
                }
            }
        }
        UserCmd::Disable { name } => {
            let a = find(&store, &name)?;
            store.accounts.set_disabled(&a.name, true)?;
            println!("disabled {}", a.name);
        }
        UserCmd::Enable { name } => {
            let a = find(&store, &name)?;
            store.accounts.set_disabled(&a.name, false)?;
            println!("enabled {}", a.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// sysexits(3) codes, so that an MTA calling us as its MDA does the right thing.
const EX_DATAERR: u8 = 65;
const EX_NOUSER: u8 = 67;
const EX_TEMPFAIL: u8 = 75;

fn deliver(config: &Config, to: &str, from: Option<&str>) -> ExitCode {
    let store = match App::open_store(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("betomail: {e:#}");
            return ExitCode::from(EX_TEMPFAIL);
        }
    };
    let account = match store.accounts.find(to) {
        Ok(Some(a)) if !a.disabled => a,
        Ok(_) => {
            eprintln!("betomail: {to}: user unknown");
            return ExitCode::from(EX_NOUSER);
        }
        Err(e) => {
            eprintln!("betomail: {e}");
            return ExitCode::from(EX_TEMPFAIL);
        }
    };
    let prefix = from
        .map(crate::delivery::local::return_path)
        .unwrap_or_default();
    let mut stdin = std::io::stdin().lock();
    match store.mail.deliver(
        std::slice::from_ref(&account),
        prefix.as_bytes(),
        &mut stdin,
        config.max_message_size,
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(StoreError::TooLarge) => {
            eprintln!(
                "betomail: message larger than max_message_size ({})",
                config.max_message_size
            );
            ExitCode::from(EX_DATAERR)
        }
        Err(e) => {
            eprintln!("betomail: delivery failed: {e}");
            ExitCode::from(EX_TEMPFAIL)
        }
    }
}

fn lock(cmd: LockCmd, config: &Config) -> anyhow::Result<ExitCode> {
    let store = App::open_store(config)?;
    match cmd {
        LockCmd::List => {
            for l in store.locks.list()? {
                println!(
                    "{}\t{}\tpeer {}\tsince {}\texpires {}",
                    l.account,
                    l.owner,
                    l.peer.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                    fmt_time(l.acquired),
                    fmt_time(l.expires)
                );
            }
        }
        LockCmd::Clear { name } => {
            let a = find(&store, &name)?;
            if store.locks.clear(&a.name)? {
                println!("lock of {} cleared", a.name);
            } else {
                println!("{} was not locked", a.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check_dns(config: &Config, ip: IpAddr, json: bool) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let dns = crate::dns::Dns::new(&config.dns)?;
    let report = rt.block_on(dns.fcrdns(ip));
    let pop: Vec<_> = config
        .listeners
        .iter()
        .filter(|l| l.protocol == Protocol::Pop3)
        .collect();
    let refused = crate::dns::refused_by_pop3(config, &report);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::dns::api_json(&report, refused))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("ip:       {}", report.ip);
    if report.ptr.is_empty() {
        println!("ptr:      (none)");
    }
    for name in &report.ptr {
        let addrs = match report.forward.get(name) {
            Some(a) if a.is_empty() => "(no A/AAAA record)".to_string(),
            Some(a) => a
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            None => "(not looked up)".to_string(),
        };
        println!("ptr:      {name} -> {addrs}");
    }
    println!("verdict:  {}", report.verdict.as_str());
    println!("reason:   {}", report.reason());
    for l in pop {
        let d = crate::dns::decide(&report, l.fcrdns_mode(), l.on_dns_error);
        println!(
            "listener {}: {}",
            l.name,
            match d {
                crate::dns::Decision::Allow => "allowed",
                crate::dns::Decision::Refuse => "REFUSED",
                crate::dns::Decision::TempFail => "temporarily refused",
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
