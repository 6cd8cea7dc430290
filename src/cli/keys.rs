//! `cardswitch keys …`: the encrypted key store.
//!
//! Every command names the store (`--store`) and finds the master key with
//! [`MasterKey::locate`]: `--master-key-file`, else systemd's credential
//! directory, else `$CARDSWITCH_MASTER_KEY`. Nothing here prints key
//! material: listings show ids, types, versions and check values.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use zeroize::Zeroizing;

use cardswitch::security::KeyAlgorithm;
use cardswitch::security::keys::{Component, KeyInfo, KeyStore, KeyType, MasterKey};

/// What a keys command refuses in its input.
#[derive(Debug, thiserror::Error)]
enum KeysCliError {
    /// Two different master key files named for `init`.
    #[error(
        "--master-key-file {} and --new-master-key {}: name one master key",
        .given.display(),
        .new.display()
    )]
    TwoMasterKeys {
        /// `--master-key-file`.
        given: PathBuf,
        /// `--new-master-key`.
        new: PathBuf,
    },
    /// Standard input ended before every custodian's component was read.
    #[error("standard input ended before component {index} of {count}")]
    ComponentsEnded {
        /// The component missing, from 1.
        index: usize,
        /// Components expected.
        count: usize,
    },
}

/// Arguments of `keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// The key store file.
    #[arg(long, global = true, default_value = "keys.store")]
    store: PathBuf,
    /// File holding the master key (64 hex characters, mode 0600).
    #[arg(long, global = true)]
    master_key_file: Option<PathBuf>,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Creates an empty key store (and, with --new-master-key, a new
    /// random master key file first). Refuses, writing nothing, when the
    /// store exists, its directory does not, or the new master key file
    /// exists.
    Init {
        /// Write a new random master key to this file (mode 0600) and use
        /// it; a file that exists is never overwritten.
        #[arg(long)]
        new_master_key: Option<PathBuf>,
    },
    /// Generates a random key.
    Generate(NewKey),
    /// Imports a key from N clear components, combined by XOR. Each
    /// component is read from standard input as one line: the hex
    /// component, optionally followed by a space and its check value.
    Import {
        #[command(flatten)]
        key: NewKey,
        /// Number of components (at least 2: split knowledge).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=9))]
        components: u8,
    },
    /// Lists keys: id, type, algorithm, version, state, check value.
    List,
    /// Replaces a key with a new random version; the old one is retired.
    Rotate {
        /// Key id.
        id: String,
    },
    /// Prints `id,type,algorithm,version,state,kcv` of every key (CSV), for
    /// exchanging check values with a bank.
    ExportKcv,
}

/// The id, type and algorithm of a key to add.
#[derive(Debug, Args)]
struct NewKey {
    /// Key id, e.g. `zpk-bank-a`.
    #[arg(long)]
    id: String,
    /// tpk, zpk, tak, zak, bdk or data.
    #[arg(long = "type")]
    key_type: KeyType,
    /// des, tdes2, tdes3, aes128, aes192, aes256 or sm4.
    #[arg(long = "alg")]
    algorithm: KeyAlgorithm,
}

impl KeysArgs {
    /// Runs the subcommand.
    pub fn run(self) -> Result<ExitCode, Box<dyn std::error::Error>> {
        let mut out = std::io::stdout().lock();
        if let KeysCommand::Init { new_master_key } = &self.command {
            return init(
                &mut out,
                &self.store,
                self.master_key_file.as_deref(),
                new_master_key.as_deref(),
            );
        }
        let master = MasterKey::locate(self.master_key_file.as_deref())?;
        let mut store = KeyStore::open(&self.store, master)?;
        match self.command {
            KeysCommand::Init { .. } => {}
            KeysCommand::Generate(key) => {
                let info = store.generate(&key.id, key.key_type, key.algorithm)?;
                store.save()?;
                print_table(&mut out, &[info])?;
            }
            KeysCommand::Import { key, components } => {
                let parts = read_components(usize::from(components))?;
                let info = store.import(&key.id, key.key_type, key.algorithm, &parts)?;
                store.save()?;
                print_table(&mut out, &[info])?;
            }
            KeysCommand::List => print_table(&mut out, &store.list())?,
            KeysCommand::Rotate { id } => {
                let info = store.rotate(&id)?;
                store.save()?;
                print_table(&mut out, &[info])?;
            }
            KeysCommand::ExportKcv => {
                writeln!(out, "id,type,algorithm,version,state,kcv")?;
                for k in store.list() {
                    writeln!(
                        out,
                        "{},{},{},{},{},{}",
                        k.id, k.key_type, k.algorithm, k.version, k.state, k.kcv
                    )?;
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// `keys init`: every precondition is checked before anything is written —
/// the store must not exist and its directory must; a new master key file
/// must not exist (it is created with `O_EXCL`, never replaced). If the
/// store then cannot be written, the new key file is removed again.
fn init(
    out: &mut impl Write,
    store: &Path,
    master_key_file: Option<&Path>,
    new_master_key: Option<&Path>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    KeyStore::check_new(store)?;
    let Some(path) = new_master_key else {
        KeyStore::create(store, MasterKey::locate(master_key_file)?)?;
        writeln!(out, "created key store {}", store.display())?;
        return Ok(ExitCode::SUCCESS);
    };
    if let Some(given) = master_key_file.filter(|m| *m != path) {
        return Err(KeysCliError::TwoMasterKeys {
            given: given.to_path_buf(),
            new: path.to_path_buf(),
        }
        .into());
    }
    let master = MasterKey::create_file(path)?;
    if let Err(e) = KeyStore::create(store, master) {
        // Nothing is sealed under the new key: take it away again, so a
        // retry starts from the same place.
        let _ = std::fs::remove_file(path);
        return Err(e.into());
    }
    writeln!(out, "wrote a new master key to {}", path.display())?;
    writeln!(out, "created key store {}", store.display())?;
    Ok(ExitCode::SUCCESS)
}

/// Reads `n` component lines (`HEX [KCV]`): at a terminal without echo,
/// one prompt per custodian; otherwise from standard input.
fn read_components(n: usize) -> Result<Vec<Component>, Box<dyn std::error::Error>> {
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut lines = stdin.lock();
    let mut parts = Vec::with_capacity(n);
    for i in 1..=n {
        let line = if interactive {
            Zeroizing::new(rpassword::prompt_password(format!(
                "component {i} of {n} (hex, then optional check value; not echoed): "
            ))?)
        } else {
            let mut line = Zeroizing::new(String::new());
            if lines.read_line(&mut line)? == 0 {
                return Err(KeysCliError::ComponentsEnded { index: i, count: n }.into());
            }
            line
        };
        let mut words = line.split_whitespace();
        let hex = Zeroizing::new(words.next().unwrap_or_default().to_string());
        parts.push((hex, words.next().map(String::from)));
    }
    Ok(parts)
}

fn print_table(out: &mut impl Write, keys: &[KeyInfo]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<24} {:<5} {:<7} {:>3} {:<8} {:<10} created",
        "id", "type", "alg", "ver", "state", "kcv"
    )?;
    for k in keys {
        writeln!(
            out,
            "{:<24} {:<5} {:<7} {:>3} {:<8} {:<10} {}",
            k.id,
            k.key_type.to_string(),
            k.algorithm.to_string(),
            k.version,
            k.state.to_string(),
            k.kcv,
            k.created
        )?;
    }
    Ok(())
}
