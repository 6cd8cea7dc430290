//! `cardswitch iso decode|encode|dialect`.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use clap::{Args, Subcommand};
use tokio_util::codec::{Decoder, Encoder};

use cardswitch::iso8583::framing::{Frame, FrameCodec, LengthPrefix, UnknownFraming};
use cardswitch::iso8583::json::{JsonMessage, Reveal, field_text};
use cardswitch::iso8583::spec::Length;
use cardswitch::iso8583::{Dialect, Message};

/// `cardswitch iso …`: tools for ISO 8583 messages.
#[derive(Debug, Subcommand)]
pub enum IsoCommand {
    /// Decode hex (an argument, a file holding hex, or `-` for stdin) and
    /// print every field; exits non-zero with the precise error if the
    /// message is malformed.
    Decode {
        #[command(flatten)]
        wire: Wire,
        /// Print one JSON object per message instead of a table.
        #[arg(long)]
        json: bool,
        /// Show PAN, track and PIN data in clear (default: masked).
        #[arg(long)]
        reveal: bool,
        /// Hex text, a file containing hex, or `-` for stdin.
        #[arg(default_value = "-")]
        input: String,
    },
    /// Encode a message given as JSON (`{"mti": "0200", "fields": {"3": "000000"}}`)
    /// and print it as upper-case hex.
    Encode {
        #[command(flatten)]
        wire: Wire,
        /// TPDU or other header to put after the length prefix, as hex.
        #[arg(long, value_name = "HEX", default_value = "")]
        header_bytes: String,
        /// The JSON object, a file holding it, or `-` for stdin.
        #[arg(default_value = "-")]
        input: String,
    },
    /// Print a dialect's field table.
    Dialect {
        /// Built-in name (iso87ascii, iso87binary, iso93binary) or a .toml path.
        name: String,
    },
}

/// Dialect and framing of the bytes read or written.
#[derive(Debug, Args)]
pub struct Wire {
    /// Built-in dialect name or path to a dialect .toml file.
    #[arg(long, short)]
    dialect: String,
    /// Length prefix in front of each message: binary2, ascii4, bcd2, or none.
    #[arg(long, default_value = "none")]
    framing: String,
    /// Bytes of header (e.g. a 5-byte TPDU) after each length prefix.
    #[arg(long, default_value_t = 0)]
    header: usize,
}

/// Why an `iso` command could not read its input or framing.
#[derive(Debug, thiserror::Error)]
enum IsoError {
    /// `--header` without a length prefix to put it after.
    #[error("--header needs a --framing")]
    HeaderWithoutFraming,
    /// `--framing` names no length prefix.
    #[error(transparent)]
    Framing(#[from] UnknownFraming),
    /// Standard input could not be read.
    #[error("stdin: {0}")]
    Stdin(#[source] std::io::Error),
    /// The input file could not be read.
    #[error("{path}: {source}")]
    File {
        /// The file as given.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The input is not hexadecimal.
    #[error("input is not hex: {0}")]
    Hex(#[from] hex::FromHexError),
    /// Bytes left over that make no whole frame.
    #[error("{0} bytes after the last complete frame")]
    Trailing(usize),
}

impl Wire {
    fn codec(&self) -> Result<Option<FrameCodec>, IsoError> {
        if self.framing == "none" {
            if self.header != 0 {
                return Err(IsoError::HeaderWithoutFraming);
            }
            return Ok(None);
        }
        let prefix: LengthPrefix = self.framing.parse()?;
        Ok(Some(FrameCodec::new(prefix).with_header(self.header)))
    }
}

/// The argument itself, a file named by it, or stdin for `-`.
fn read_input(input: &str, looks_inline: impl Fn(&str) -> bool) -> Result<String, IsoError> {
    if input == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(IsoError::Stdin)?;
        return Ok(text);
    }
    if looks_inline(input) {
        return Ok(input.to_string());
    }
    std::fs::read_to_string(input).map_err(|source| IsoError::File {
        path: input.to_string(),
        source,
    })
}

fn parse_hex(text: &str) -> Result<Vec<u8>, IsoError> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    Ok(hex::decode(&compact)?)
}

impl IsoCommand {
    /// Runs the subcommand.
    pub fn run(self) -> Result<ExitCode, Box<dyn std::error::Error>> {
        match self {
            IsoCommand::Decode {
                wire,
                json,
                reveal,
                input,
            } => {
                let dialect = Dialect::resolve(&wire.dialect)?;
                let codec = wire.codec()?;
                let text = read_input(&input, |s| parse_hex(s).is_ok())?;
                let bytes = parse_hex(&text)?;
                let reveal = if reveal {
                    Reveal::Clear
                } else {
                    Reveal::Masked
                };
                decode(&dialect, codec, bytes, json, reveal)
            }
            IsoCommand::Encode {
                wire,
                header_bytes,
                input,
            } => {
                let dialect = Dialect::resolve(&wire.dialect)?;
                let codec = wire.codec()?;
                let text = read_input(&input, |s| s.trim_start().starts_with('{'))?;
                let message = JsonMessage::parse(&text)?.to_message(&dialect)?;
                let body = message.to_bytes(&dialect)?;
                let out = match codec {
                    None => BytesMut::from(&body[..]),
                    Some(mut codec) => {
                        let header = Bytes::from(parse_hex(&header_bytes)?);
                        let mut out = BytesMut::new();
                        codec.encode(
                            Frame {
                                header,
                                message: body,
                            },
                            &mut out,
                        )?;
                        out
                    }
                };
                super::say(&hex::encode_upper(&out))?;
                Ok(ExitCode::SUCCESS)
            }
            IsoCommand::Dialect { name } => {
                let dialect = Dialect::resolve(&name)?;
                print_dialect(&dialect)?;
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

fn decode(
    dialect: &Arc<Dialect>,
    codec: Option<FrameCodec>,
    bytes: Vec<u8>,
    json: bool,
    reveal: Reveal,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut frames = Vec::new();
    match codec {
        None => frames.push(Frame {
            header: Bytes::new(),
            message: Bytes::from(bytes),
        }),
        Some(mut codec) => {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Some(frame) = codec.decode(&mut buf)? {
                frames.push(frame);
            }
            if !buf.is_empty() {
                return Err(IsoError::Trailing(buf.len()).into());
            }
        }
    }
    let mut out = std::io::stdout().lock();
    for (index, frame) in frames.into_iter().enumerate() {
        let message = match Message::decode(dialect, frame.message) {
            Ok(message) => message,
            Err(error) => {
                eprintln!(
                    "error: message {}: {error} (response code {})",
                    index + 1,
                    error.response_code()
                );
                return Ok(ExitCode::FAILURE);
            }
        };
        if json {
            let object = JsonMessage::from_message(dialect, &message, reveal);
            writeln!(out, "{}", serde_json::to_string(&object)?)?;
            continue;
        }
        if !frame.header.is_empty() {
            writeln!(out, "header  {}", hex::encode_upper(&frame.header))?;
        }
        writeln!(out, "MTI     {}", message.mti())?;
        for (number, value) in message.fields() {
            let (name, layout) = dialect
                .field(number)
                .map(|f| (f.name.as_str(), f.layout()))
                .unwrap_or_default();
            let text = field_text(dialect, number, value, reveal);
            writeln!(out, "{number:>4}  {layout:<10} {name:<42} {text}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_dialect(dialect: &Dialect) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{} — {}", dialect.name(), dialect.description())?;
    writeln!(
        out,
        "MTI {:?}, bitmap {:?}{}",
        dialect.mti_encoding(),
        dialect.bitmap_encoding(),
        if dialect.has_tertiary_bitmap() {
            ", tertiary bitmap"
        } else {
            ""
        }
    )?;
    for field in dialect.fields() {
        let prefix = match field.length {
            Length::Fixed(_) => String::new(),
            Length::Variable { prefix, .. } => format!("prefix {prefix:?}"),
        };
        writeln!(
            out,
            "{:>4}  {:<10} {:<12} {:<14} {}",
            field.number,
            field.layout(),
            format!("{:?}", field.data),
            prefix,
            field.name
        )?;
    }
    Ok(())
}
