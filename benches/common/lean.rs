//! The lean ends of the end-to-end bench: a load driver and a bank stub
//! that cost so little per transaction that the direct path (driver →
//! stub) runs at several times the switch's rate on one shared core, so
//! the bench measures the switch and not its load tool (`sim pos` and
//! `sim bank` are full simulators: ledgers, templates, checks, a writer
//! task per connection).
//!
//! Both run on one `current_thread` runtime, one task per connection, and
//! write everything a wake-up produced in one `write` (no channel, no
//! writer task). The driver builds each request from a template by patching
//! field 7, 11 and 37 in place (their byte positions found once by
//! encoding the template twice), and decodes each answer (its STAN finds
//! the request's send time; its field 39 must be `00`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use cardswitch::iso8583::{Dialect, Message, Mti};
use futures_util::{FutureExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedRead;

use cardswitch::iso8583::framing::{FrameCodec, LengthPrefix};

/// The dialect of terminals and bank in the bench.
pub const DIALECT: &str = "iso87ascii";

fn dialect() -> Arc<Dialect> {
    match Dialect::builtin(DIALECT) {
        Some(Ok(d)) => d,
        _ => panic!("built-in dialect {DIALECT}"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Appends a length-prefixed (2 bytes, binary) frame.
fn put_frame(out: &mut BytesMut, message: &[u8]) {
    out.put_u16(u16::try_from(message.len()).unwrap_or(u16::MAX));
    out.put_slice(message);
}

/// The bank stub: every request is answered at once with its response MTI,
/// field 39 `00` and field 38, secrets dropped.
pub fn bank(listen: SocketAddr) {
    runtime().block_on(async move {
        let dialect = dialect();
        let listener = TcpListener::bind(listen).await.expect("bind bank stub");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(answer_all(stream, Arc::clone(&dialect)));
        }
    });
}

async fn answer_all(stream: TcpStream, dialect: Arc<Dialect>) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut frames = FramedRead::new(read, FrameCodec::new(LengthPrefix::Binary2));
    let mut out = BytesMut::with_capacity(64 * 1024);
    while let Some(Ok(frame)) = frames.next().await {
        answer(&dialect, frame.message, &mut out);
        while let Some(Some(Ok(frame))) = frames.next().now_or_never() {
            answer(&dialect, frame.message, &mut out);
        }
        if write.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}

fn answer(dialect: &Dialect, request: Bytes, out: &mut BytesMut) {
    let Ok(mut m) = Message::decode(dialect, request) else {
        return;
    };
    let Some(mti) = m.mti().response() else {
        return;
    };
    m.set_mti(mti);
    for field in [35, 45, 52, 55, 64, 128] {
        m.remove(field);
    }
    m.set(39, Bytes::from_static(b"00"));
    m.set(38, Bytes::from_static(b"A00001"));
    if let Ok(bytes) = m.to_bytes(dialect) {
        put_frame(out, &bytes);
    }
}

/// How the driver puts load on.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Closed loop: `count` transactions in all, `pipeline` in flight per
    /// connection.
    Closed {
        /// Transactions in all.
        count: u64,
        /// In flight per connection.
        pipeline: usize,
        /// No new request after this long (a sustained run), if given.
        seconds: Option<u64>,
    },
    /// Open loop: `rate` requests per second in all, for `seconds`, each
    /// latency measured from when its request was written.
    Open {
        /// Requests per second, all connections together.
        rate: u64,
        /// Length of the run.
        seconds: u64,
    },
}

/// What one driver run saw (printed as one JSON line).
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// Answers per second.
    pub throughput: f64,
    /// Answers with field 39 `00`.
    pub ok: u64,
    /// Answers that did not check out, or never came.
    pub bad: u64,
    /// Latency percentiles, µs.
    pub p50: u64,
    /// 99th percentile, µs.
    pub p99: u64,
    /// 99.9th percentile, µs.
    pub p999: u64,
    /// Largest latency, µs.
    pub max: u64,
}

impl Outcome {
    /// The JSON line the driver prints.
    pub fn to_json(self) -> String {
        format!(
            "{{\"throughput\":{:.1},\"ok\":{},\"bad\":{},\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{}}}",
            self.throughput, self.ok, self.bad, self.p50, self.p99, self.p999, self.max
        )
    }

    /// Reads a line printed by [`Outcome::to_json`].
    pub fn from_json(line: &str) -> Outcome {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let n = |k: &str| v[k].as_u64().unwrap_or_default();
        Outcome {
            throughput: v["throughput"].as_f64().unwrap_or_default(),
            ok: n("ok"),
            bad: n("bad"),
            p50: n("p50"),
            p99: n("p99"),
            p999: n("p999"),
            max: n("max"),
        }
    }

    /// Whether every answer checked out.
    pub fn checked_out(&self) -> bool {
        self.ok > 0 && self.bad == 0
    }
}

/// A request template and where the digits of fields 2, 7, 11 and 37 that
/// change sit in its encoding.
struct Template {
    bytes: Vec<u8>,
    pan: Vec<usize>,
    transmission: Vec<usize>,
    stan: Vec<usize>,
    rrn: Vec<usize>,
}

impl Template {
    fn new(dialect: &Dialect, terminal: &str) -> Template {
        let encode = |digit: char| {
            let repeat = |n: usize| digit.to_string().repeat(n);
            let mut m = Message::new(Mti::parse("0200").expect("MTI"));
            m.set(2, format!("476173{}", repeat(10)));
            m.set(3, Bytes::from_static(b"000000"));
            m.set(4, Bytes::from_static(b"000000001000"));
            m.set(7, repeat(10));
            m.set(11, repeat(6));
            m.set(12, Bytes::from_static(b"120000"));
            m.set(13, Bytes::from_static(b"1208"));
            m.set(14, Bytes::from_static(b"2912"));
            m.set(22, Bytes::from_static(b"051"));
            m.set(25, Bytes::from_static(b"00"));
            m.set(37, repeat(12));
            m.set(41, terminal.to_string());
            m.set(42, Bytes::from_static(b"M0             "));
            m.set(49, Bytes::from_static(b"978"));
            m.to_bytes(dialect).expect("template encodes").to_vec()
        };
        let (zeros, ones) = (encode('0'), encode('1'));
        let differ: Vec<usize> = (0..zeros.len()).filter(|&i| zeros[i] != ones[i]).collect();
        // In order: field 2's last 10 digits, 7 (10), 11 (6), 37 (12),
        // ASCII here.
        assert_eq!(differ.len(), 38, "the {DIALECT} template's digits");
        Template {
            bytes: zeros,
            pan: differ[..10].to_vec(),
            transmission: differ[10..20].to_vec(),
            stan: differ[20..26].to_vec(),
            rrn: differ[26..].to_vec(),
        }
    }

    /// Appends the request with these values as one frame.
    fn put(&self, out: &mut BytesMut, card: u64, transmission: &[u8; 10], stan: u32, rrn: u64) {
        let at = out.len() + 2;
        put_frame(out, &self.bytes);
        let frame = &mut out[at..];
        let account = 476_173_000_000_000 + card % 1_000_000_000;
        write_digits(
            frame,
            &self.pan,
            account % 1_000_000_000 * 10 + luhn(account),
        );
        for (pos, digit) in self.transmission.iter().zip(transmission) {
            frame[*pos] = *digit;
        }
        write_digits(frame, &self.stan, u64::from(stan));
        write_digits(frame, &self.rrn, rrn);
    }
}

/// The Luhn check digit of a 15-digit account number.
fn luhn(mut account: u64) -> u64 {
    let mut sum = 0;
    let mut double = true;
    while account > 0 {
        let mut d = account % 10;
        if double {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        double = !double;
        account /= 10;
    }
    (10 - sum % 10) % 10
}

fn write_digits(frame: &mut [u8], positions: &[usize], mut value: u64) {
    for pos in positions.iter().rev() {
        frame[*pos] = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Field 7 (MMDDhhmmss, UTC) for now; changes once a second.
fn transmission_now() -> [u8; 10] {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    // The date part need not be a real date for the bench: it keeps
    // (terminal, STAN, field 7) unique within a day.
    let days = secs / 86_400;
    let text = format!(
        "{:02}{:02}{:02}{:02}{:02}",
        days % 12 + 1,
        days % 28 + 1,
        day / 3600,
        day / 60 % 60,
        day % 60
    );
    let mut out = [b'0'; 10];
    out.copy_from_slice(text.as_bytes());
    out
}

/// One connection's share of a run.
struct Conn {
    index: usize,
    template: Template,
    dialect: Arc<Dialect>,
    pending: HashMap<u32, Instant>,
    next_stan: u32,
    sent: u64,
    latency: Histogram<u64>,
    ok: u64,
    bad: u64,
}

impl Conn {
    fn new(index: usize, dialect: Arc<Dialect>) -> Conn {
        let terminal = format!("TERM{:04}", index + 1);
        Conn {
            index,
            template: Template::new(&dialect, &terminal),
            dialect,
            pending: HashMap::new(),
            next_stan: 0,
            sent: 0,
            latency: Histogram::new(3).expect("histogram"),
            ok: 0,
            bad: 0,
        }
    }

    fn request(&mut self, out: &mut BytesMut, transmission: &[u8; 10], due: Instant) {
        self.next_stan = self.next_stan % 999_999 + 1;
        let rrn = (self.index as u64 % 100) * 10_000_000_000 + self.sent % 10_000_000_000;
        // 100,000 cards per terminal, each used in turn.
        let card = self.index as u64 * 100_000 + self.sent % 100_000;
        self.template
            .put(out, card, transmission, self.next_stan, rrn);
        self.pending.insert(self.next_stan, due);
        self.sent += 1;
    }

    fn answered(&mut self, frame: Bytes, now: Instant) {
        let Ok(m) = Message::decode(&self.dialect, frame) else {
            self.bad += 1;
            return;
        };
        let Some(sent) = m.stan().and_then(|s| self.pending.remove(&s)) else {
            self.bad += 1;
            return;
        };
        let us = now.saturating_duration_since(sent).as_micros() as u64;
        let _ = self.latency.record(us.max(1));
        if m.response_code() == Some("00") {
            self.ok += 1;
        } else {
            self.bad += 1;
            if self.bad == 1 {
                eprintln!("driver: an answer with field 39 {:?}", m.response_code());
            }
        }
    }
}

/// Runs the driver against `target` with `connections` connections and
/// prints its outcome.
pub fn drive(target: SocketAddr, connections: usize, mode: Mode) -> Outcome {
    runtime().block_on(async move {
        let dialect = dialect();
        let started = Instant::now();
        let tasks: Vec<_> = (0..connections)
            .map(|i| {
                let conn = Conn::new(i, Arc::clone(&dialect));
                tokio::spawn(match mode {
                    Mode::Closed {
                        count,
                        pipeline,
                        seconds,
                    } => {
                        let share = count / connections as u64
                            + u64::from((i as u64) < count % connections as u64);
                        let until = seconds.map(|s| started + Duration::from_secs(s));
                        closed(target, conn, share, pipeline, until).boxed()
                    }
                    Mode::Open { rate, seconds } => {
                        open(target, conn, rate as f64 / connections as f64, seconds).boxed()
                    }
                })
            })
            .collect();
        let mut total: Option<Histogram<u64>> = None;
        let (mut ok, mut bad) = (0, 0);
        for task in tasks {
            let Ok(conn) = task.await else { continue };
            ok += conn.ok;
            bad += conn.bad + conn.pending.len() as u64;
            match &mut total {
                Some(h) => {
                    let _ = h.add(&conn.latency);
                }
                None => total = Some(conn.latency),
            }
        }
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        let h = total.unwrap_or_else(|| Histogram::new(3).expect("histogram"));
        Outcome {
            throughput: ok as f64 / elapsed,
            ok,
            bad,
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    })
}

/// How long the driver waits for the last answers of a run.
const DRAIN: Duration = Duration::from_secs(10);

async fn closed(
    target: SocketAddr,
    mut conn: Conn,
    mut count: u64,
    pipeline: usize,
    until: Option<Instant>,
) -> Conn {
    let Ok(stream) = TcpStream::connect(target).await else {
        conn.bad += count;
        return conn;
    };
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut frames = FramedRead::new(read, FrameCodec::new(LengthPrefix::Binary2));
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut transmission = transmission_now();
    let now = Instant::now();
    while conn.sent < count.min(pipeline as u64) {
        conn.request(&mut out, &transmission, now);
    }
    let mut answered = 0u64;
    while answered < count {
        if write.write_all(&out).await.is_err() {
            break;
        }
        out.clear();
        let Ok(Some(Ok(first))) = tokio::time::timeout(DRAIN, frames.next()).await else {
            break;
        };
        let now = Instant::now();
        let mut batch = vec![first];
        while let Some(Some(Ok(frame))) = frames.next().now_or_never() {
            batch.push(frame);
        }
        if conn.sent % 4096 < batch.len() as u64 {
            transmission = transmission_now();
            if until.is_some_and(|t| now >= t) {
                count = conn.sent;
            }
        }
        for frame in batch {
            conn.answered(frame.message, now);
            answered += 1;
            if conn.sent < count {
                conn.request(&mut out, &transmission, now);
            }
        }
    }
    conn
}

async fn open(target: SocketAddr, mut conn: Conn, rate: f64, seconds: u64) -> Conn {
    let Ok(stream) = TcpStream::connect(target).await else {
        conn.bad += 1;
        return conn;
    };
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut frames = FramedRead::new(read, FrameCodec::new(LengthPrefix::Binary2));
    let mut out = BytesMut::with_capacity(64 * 1024);
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let total = (rate * seconds as f64) as u64;
    let mut transmission = transmission_now();
    let mut due = start;
    loop {
        let sending = conn.sent < total;
        tokio::select! {
            biased;
            frame = frames.next() => match frame {
                Some(Ok(frame)) => {
                    let now = Instant::now();
                    conn.answered(frame.message, now);
                    while let Some(Some(Ok(frame))) = frames.next().now_or_never() {
                        conn.answered(frame.message, now);
                    }
                    if !sending && conn.pending.is_empty() {
                        break;
                    }
                }
                _ => break,
            },
            _ = tokio::time::sleep_until(due.into()), if sending => {
                let now = Instant::now();
                if conn.sent.is_multiple_of(1024) {
                    transmission = transmission_now();
                }
                // Every request already due goes out now. Each is timed
                // from now: the sender never waits for answers, and the
                // timer's millisecond granularity is the driver's, not the
                // path's.
                while conn.sent < total && due <= now {
                    conn.request(&mut out, &transmission, now);
                    due += interval;
                }
                if write.write_all(&out).await.is_err() {
                    break;
                }
                out.clear();
            },
            _ = tokio::time::sleep_until((end + DRAIN).into()) => break,
        }
    }
    conn
}
