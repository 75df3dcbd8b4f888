//! Writing a disk image onto a block device (or a regular file used as a disk).
//!
//! Owns: fetching the image (HTTP(S) with reqwest, or a local file such as the
//! ramdisk's cache), zstd decoding, the sha256 of the stream *as published*
//! (the `.zst` bytes for `raw.zst`), the size checks before and during the
//! write, the final fsync and the partition-table re-read. The work runs as a
//! three-stage pipeline of 4 MiB buffers: read + hash → decode → write, each
//! stage on its own thread, so decoding overlaps writing.
//!
//! Also owns [`blkdev`], the block-device ioctls that [`crate::wipe`] and
//! [`crate::keys`] share: the only `unsafe` code of the crate.
//!
//! Must not: decide whether a node should be written (the controller does),
//! retry on its own, or touch anything but the named target.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use zstd::stream::raw::{InBuffer, Operation, OutBuffer};

/// Size of the buffers that travel through the pipeline (and of each write).
pub const BUFFER_SIZE: usize = 4 << 20;

/// Buffers in flight per channel; with the pool this bounds memory to a few
/// tens of MiB whatever the image size.
const CHANNEL_DEPTH: usize = 4;

/// Default interval between two progress reports.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// How the published image is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Format {
    /// The disk's bytes as they are.
    #[serde(rename = "raw")]
    Raw,
    /// The disk's bytes compressed with zstd (one or more frames).
    #[serde(rename = "raw.zst")]
    RawZst,
}

impl Format {
    /// The format a source's name suggests: `raw.zst` for names ending in
    /// `.zst`, `raw` otherwise.
    pub fn guess(source: &Source) -> Format {
        let name = match source {
            Source::Http(url) => url.path().to_owned(),
            Source::File(path) => path.to_string_lossy().into_owned(),
        };
        if name.ends_with(".zst") { Format::RawZst } else { Format::Raw }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Raw => "raw",
            Format::RawZst => "raw.zst",
        })
    }
}

/// A format name that is neither `raw` nor `raw.zst`.
#[derive(Debug, thiserror::Error)]
#[error("unknown image format {0:?} (expected \"raw\" or \"raw.zst\")")]
pub struct ParseFormatError(String);

impl FromStr for Format {
    type Err = ParseFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raw" => Ok(Format::Raw),
            "raw.zst" => Ok(Format::RawZst),
            other => Err(ParseFormatError(other.to_owned())),
        }
    }
}

/// Where the image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An `http://` or `https://` URL.
    Http(reqwest::Url),
    /// A local file (tests, the ramdisk's cached images).
    File(PathBuf),
}

/// A source that looks like a URL but does not parse as one.
#[derive(Debug, thiserror::Error)]
#[error("invalid image URL {text:?}")]
pub struct ParseSourceError {
    text: String,
    #[source]
    source: UrlParseError,
}

/// `url::ParseError`, which reqwest does not re-export by name.
type UrlParseError = <reqwest::Url as FromStr>::Err;

impl FromStr for Source {
    type Err = ParseSourceError;

    /// `http://…` and `https://…` are URLs; anything else is a local path.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("http://") || s.starts_with("https://") {
            reqwest::Url::parse(s).map(Source::Http).map_err(|source| ParseSourceError { text: s.to_owned(), source })
        } else {
            Ok(Source::File(PathBuf::from(s)))
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Http(url) => write!(f, "{url}"),
            Source::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A sha256 digest, parsed from (and shown as) 64 hexadecimal digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sha256Digest(pub [u8; 32]);

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Text that is not 64 hexadecimal digits.
#[derive(Debug, thiserror::Error)]
#[error("invalid sha256 {0:?}: expected 64 hexadecimal digits")]
pub struct ParseDigestError(String);

impl FromStr for Sha256Digest {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|_| ParseDigestError(s.to_owned()))?;
        Ok(Sha256Digest(out))
    }
}

/// What to write: the controller's description of an image.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Where to read it from.
    pub source: Source,
    /// How it is encoded.
    pub format: Format,
    /// The sha256 of the stream as published (compressed bytes for `raw.zst`).
    pub sha256: Option<Sha256Digest>,
    /// The size of the disk image once decoded, when known.
    pub size: Option<u64>,
}

/// Knobs that are not part of the image itself.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// The HTTP client to use (TLS roots, proxies); `None` builds one with
    /// the timeouts below.
    pub client: Option<reqwest::Client>,
    /// How long to wait for the TCP/TLS connection.
    pub connect_timeout: Duration,
    /// How long a stalled download may stay silent before it counts as lost.
    pub read_timeout: Duration,
    /// Minimum interval between two progress reports.
    pub progress_interval: Duration,
    /// Sent as `Authorization: Bearer` with an HTTP(S) fetch: the agent's
    /// session, for an image under the controller's own `/images/` (a
    /// private environment's image is served only to the agent writing it).
    pub bearer: Option<Bearer>,
}

/// A bearer token that `Debug` never shows.
#[derive(Clone)]
pub struct Bearer(pub String);

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bearer(<redacted>)")
    }
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            client: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            progress_interval: PROGRESS_INTERVAL,
            bearer: None,
        }
    }
}

/// Where a write stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Downloading, decoding and writing.
    Writing,
    /// Everything is written; waiting for the device to flush its cache.
    Flushing,
}

/// A progress report: sent at most once per [`WriteOptions::progress_interval`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// What is happening.
    pub stage: Stage,
    /// Bytes received from the source (compressed bytes for `raw.zst`).
    pub downloaded: u64,
    /// Bytes written to the target (decoded bytes).
    pub written: u64,
    /// The decoded size, when the image declares one.
    pub expected: Option<u64>,
}

/// What a successful write did.
#[derive(Debug, Clone, Serialize)]
pub struct WriteReport {
    /// The source, as given.
    pub source: String,
    /// The target device or file.
    pub device: PathBuf,
    /// The image's format.
    pub format: Format,
    /// Bytes received from the source.
    pub downloaded: u64,
    /// Bytes written to the target.
    pub written: u64,
    /// sha256 of the received stream.
    pub sha256: Sha256Digest,
    /// Whether an expected sha256 was given and matched.
    pub sha256_verified: bool,
    /// The target's size in bytes.
    pub target_size: u64,
    /// Whether the kernel re-read the partition table (false for regular
    /// files and devices without partitions).
    pub partitions_reread: bool,
    /// Wall-clock seconds from start to the end of the re-read.
    pub seconds: f64,
}

/// Why a stream ended before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TruncatedBy {
    /// The server announced this many bytes in `Content-Length`.
    ContentLength(u64),
    /// A chunked transfer ended without its final chunk.
    ChunkedTransfer,
    /// The data ended inside a zstd frame.
    ZstdFrame,
}

impl fmt::Display for TruncatedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TruncatedBy::ContentLength(n) => write!(f, "the server announced {n} bytes (Content-Length)"),
            TruncatedBy::ChunkedTransfer => f.write_str("the chunked transfer ended without its last chunk"),
            TruncatedBy::ZstdFrame => f.write_str("the data ends inside a zstd frame"),
        }
    }
}

/// Everything that can go wrong while writing an image. Each variant names
/// the image (URL or path) or the device it was working on.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The HTTP client could not be built (TLS back end).
    #[error("cannot build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// The server could not be reached, or did not answer with headers.
    #[error("cannot reach {url}")]
    Unreachable {
        /// The image URL.
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with a non-success status.
    #[error("GET {url}: server answered {status}")]
    HttpStatus {
        /// The image URL.
        url: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
    },
    /// The connection broke (reset, timeout) in the middle of the body.
    #[error("connection to {url} lost after {received} bytes")]
    ConnectionLost {
        /// The image URL.
        url: String,
        /// Bytes received before the loss.
        received: u64,
        #[source]
        source: reqwest::Error,
    },
    /// The stream ended early: shorter than announced, or inside a zstd frame.
    #[error("{image}: stream truncated after {received} bytes: {by}")]
    Truncated {
        /// The image URL or path.
        image: String,
        /// Bytes received (stream as published).
        received: u64,
        /// How the truncation was noticed.
        by: TruncatedBy,
    },
    /// The zstd decoder refused the data.
    #[error("{image}: corrupted zstd data near compressed byte {offset}: {detail}")]
    CorruptZstd {
        /// The image URL or path.
        image: String,
        /// Compressed bytes consumed before the error.
        offset: u64,
        /// zstd's own error name.
        detail: String,
    },
    /// The stream's sha256 is not the expected one.
    #[error("{image}: sha256 mismatch: expected {expected}, got {actual}")]
    ChecksumMismatch {
        /// The image URL or path.
        image: String,
        /// What the controller said.
        expected: Sha256Digest,
        /// What was received.
        actual: Sha256Digest,
    },
    /// The decoded image is not the declared size.
    #[error("{image}: decoded size is {written} bytes but {declared} were declared")]
    SizeMismatch {
        /// The image URL or path.
        image: String,
        /// The declared size.
        declared: u64,
        /// The decoded (and written) size.
        written: u64,
    },
    /// The target is smaller than the image's declared size; nothing was written.
    #[error("{device} holds {target_size} bytes but the image needs {image_size}: nothing written")]
    TargetTooSmall {
        /// The target.
        device: PathBuf,
        /// The target's size.
        target_size: u64,
        /// The image's declared size.
        image_size: u64,
    },
    /// The stream turned out bigger than the target while writing.
    #[error("{image} does not fit on {device}: the stream goes past its {target_size} bytes")]
    StreamTooBig {
        /// The image URL or path.
        image: String,
        /// The target.
        device: PathBuf,
        /// The target's size.
        target_size: u64,
    },
    /// The local image file could not be opened or read.
    #[error("cannot read image file {path}")]
    ReadSource {
        /// The image file.
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The target could not be opened or sized.
    #[error("cannot open target {device}")]
    OpenTarget {
        /// The target.
        device: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A write to the target failed.
    #[error("cannot write to {device} at byte {offset}")]
    Write {
        /// The target.
        device: PathBuf,
        /// Where the failed write started.
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// fsync on the target failed: the data may not be on the disk.
    #[error("cannot flush {device}")]
    Flush {
        /// The target.
        device: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The kernel refused to re-read the partition table.
    #[error("cannot make the kernel re-read the partition table of {device}")]
    RereadPartitions {
        /// The target.
        device: PathBuf,
        #[source]
        source: nix::Error,
    },
    /// A pipeline thread died (a bug).
    #[error("the {stage} stage of the image pipeline stopped unexpectedly")]
    Pipeline {
        /// Which stage.
        stage: &'static str,
    },
}

/// Writes `spec` onto `target` (a block device or an existing regular file,
/// whose current length is its capacity), calling `progress` at most once per
/// `options.progress_interval` and once at the end of each stage.
///
/// Refuses before writing anything when the image's declared size (given
/// size, `Content-Length` or file size for raw images, the zstd frame header
/// for compressed ones) exceeds the target's. After the last byte: checks the
/// sha256 and the size, fsyncs the target and asks the kernel to re-read its
/// partition table.
pub async fn write_image(
    spec: &ImageSpec,
    target: &Path,
    options: &WriteOptions,
    mut progress: impl FnMut(Progress),
) -> Result<WriteReport, ImageError> {
    let started = Instant::now();
    let image = spec.source.to_string();
    let target_file = open_target(target)?;
    let capacity = target_file.capacity;

    let pool = Pool::default();
    let counters = Arc::new(Counters::default());
    let opened = open_source(spec, options).await?;
    let declared = spec.size.or_else(|| match spec.format {
        Format::Raw => opened.length,
        // A frame header may carry the decoded size; skippable frames say 0.
        Format::RawZst => zstd::zstd_safe::get_frame_content_size(&opened.prefix).ok().flatten().filter(|n| *n > 0),
    });
    if let Some(image_size) = declared.filter(|n| *n > capacity) {
        return Err(ImageError::TargetTooSmall { device: target.to_owned(), target_size: capacity, image_size });
    }
    counters.expected.store(declared.unwrap_or(u64::MAX), Ordering::Relaxed);

    // Stage 3: the writer.
    let (write_tx, write_rx) = mpsc::channel::<Block>(CHANNEL_DEPTH);
    let writer = {
        let ctx = WriterCtx { image: image.clone(), device: target.to_owned(), capacity, pool: pool.clone(), counters: counters.clone() };
        let file = target_file.file;
        tokio::task::spawn_blocking(move || ctx.run(file, write_rx))
    };
    // Stage 2: the decoder (raw images go straight from the reader to the writer).
    let (reader_tx, decoder) = match spec.format {
        Format::Raw => (write_tx, None),
        Format::RawZst => {
            let (tx, rx) = mpsc::channel::<Block>(CHANNEL_DEPTH);
            let ctx = DecoderCtx { image: image.clone(), pool: pool.clone() };
            (tx, Some(tokio::task::spawn_blocking(move || ctx.run(rx, write_tx))))
        }
    };
    // Stage 1: the reader, on this task for HTTP and on a thread for files.
    let Opened { body, length, prefix } = opened;
    let reader = {
        let (pool, counters) = (pool.clone(), counters.clone());
        async move {
            match body {
                Body::Http { response, url } => read_http(response, url, length, prefix, reader_tx, pool, counters).await,
                Body::File { file, path } => tokio::task::spawn_blocking(move || read_file(file, path, prefix, reader_tx, pool, counters))
                    .await
                    .unwrap_or(Err(Stop::Failed(ImageError::Pipeline { stage: "read" }))),
            }
        }
    };
    let pipeline = async move {
        let read = reader.await;
        let decoded = match decoder {
            Some(handle) => handle.await.unwrap_or(Err(Stop::Failed(ImageError::Pipeline { stage: "decode" }))),
            None => Ok(()),
        };
        let written = writer.await.unwrap_or(Err(Stop::Failed(ImageError::Pipeline { stage: "write" })));
        // The stage that failed is the cause; the others only stopped after it.
        match (read, decoded, written) {
            (Ok(digest), Ok(()), Ok((file, written))) => Ok((digest, file, written)),
            (Err(Stop::Failed(e)), _, _) | (_, Err(Stop::Failed(e)), _) | (_, _, Err(Stop::Failed(e))) => Err(e),
            _ => Err(ImageError::Pipeline { stage: "read" }),
        }
    };
    let (digest, file, written) = with_progress(pipeline, &counters, Stage::Writing, options.progress_interval, &mut progress).await?;

    let downloaded = counters.downloaded.load(Ordering::Relaxed);
    if let Some(expected) = spec.sha256.filter(|e| *e != digest) {
        return Err(ImageError::ChecksumMismatch { image, expected, actual: digest });
    }
    if let Some(declared) = spec.size.filter(|n| *n != written) {
        return Err(ImageError::SizeMismatch { image, declared, written });
    }

    let device = target.to_owned();
    let flush = async {
        tokio::task::spawn_blocking(move || {
            file.sync_all().map_err(|source| ImageError::Flush { device: device.clone(), source })?;
            let reread =
                blkdev::reread_partitions(&file).map_err(|source| ImageError::RereadPartitions { device: device.clone(), source })?;
            Ok(reread)
        })
        .await
        .unwrap_or(Err(ImageError::Pipeline { stage: "flush" }))
    };
    let partitions_reread = with_progress(flush, &counters, Stage::Flushing, options.progress_interval, &mut progress).await?;

    Ok(WriteReport {
        source: image,
        device: target.to_owned(),
        format: spec.format,
        downloaded,
        written,
        sha256: digest,
        sha256_verified: spec.sha256.is_some(),
        target_size: capacity,
        partitions_reread,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Drives `work` to completion, reporting progress every `interval` and once at the end.
async fn with_progress<T>(
    work: impl Future<Output = Result<T, ImageError>>,
    counters: &Counters,
    stage: Stage,
    interval: Duration,
    progress: &mut impl FnMut(Progress),
) -> Result<T, ImageError> {
    tokio::pin!(work);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            result = &mut work => {
                if result.is_ok() {
                    progress(counters.snapshot(stage));
                }
                return result;
            }
            _ = ticks.tick() => progress(counters.snapshot(stage)),
        }
    }
}

/// Byte counters shared by the stages and read by the progress reporter.
#[derive(Debug, Default)]
struct Counters {
    downloaded: AtomicU64,
    written: AtomicU64,
    /// `u64::MAX` when unknown.
    expected: AtomicU64,
}

impl Counters {
    fn snapshot(&self, stage: Stage) -> Progress {
        let expected = self.expected.load(Ordering::Relaxed);
        Progress {
            stage,
            downloaded: self.downloaded.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            expected: (expected != u64::MAX).then_some(expected),
        }
    }
}

/// A message between two stages. A channel that closes without `End` means
/// the sending stage stopped (and recorded why).
#[derive(Debug)]
enum Block {
    Data(Vec<u8>),
    End,
}

/// How a stage ended when it did not succeed.
#[derive(Debug)]
enum Stop {
    /// This stage hit the problem.
    Failed(ImageError),
    /// Another stage stopped first; this one only followed.
    Aborted,
}

/// Recycled [`BUFFER_SIZE`] buffers: fresh 4 MiB allocations are page-faulted
/// on every use, recycled ones are not.
#[derive(Debug, Clone, Default)]
struct Pool(Arc<Mutex<Vec<Vec<u8>>>>);

impl Pool {
    fn take(&self) -> Vec<u8> {
        let recycled = self.0.lock().ok().and_then(|mut free| free.pop());
        let mut buf = recycled.unwrap_or_else(|| Vec::with_capacity(BUFFER_SIZE));
        buf.clear();
        buf
    }

    fn give(&self, buf: Vec<u8>) {
        if let Ok(mut free) = self.0.lock()
            && free.len() < 4 * CHANNEL_DEPTH
        {
            free.push(buf);
        }
    }
}

struct Target {
    file: File,
    capacity: u64,
}

fn open_target(path: &Path) -> Result<Target, ImageError> {
    let err = |source| ImageError::OpenTarget { device: path.to_owned(), source };
    let meta = std::fs::metadata(path).map_err(err)?;
    let mut options = OpenOptions::new();
    options.write(true);
    if meta.file_type().is_block_device() {
        // Exclusive open: refuses a disk that is mounted or otherwise claimed.
        options.custom_flags(nix::fcntl::OFlag::O_EXCL.bits());
    } else if !meta.is_file() {
        return Err(err(io::Error::new(io::ErrorKind::InvalidInput, "neither a block device nor a regular file")));
    }
    let file = options.open(path).map_err(err)?;
    let capacity = blkdev::size(&file).map_err(err)?;
    Ok(Target { file, capacity })
}

struct Opened {
    body: Body,
    /// The stream's length as published, when known.
    length: Option<u64>,
    /// The first bytes, already read (to look at the zstd frame header).
    prefix: Vec<u8>,
}

enum Body {
    Http { response: reqwest::Response, url: String },
    File { file: File, path: PathBuf },
}

/// Enough for any zstd frame header (`ZSTD_FRAMEHEADERSIZE_MAX`).
const PREFIX_LEN: usize = 18;

async fn open_source(spec: &ImageSpec, options: &WriteOptions) -> Result<Opened, ImageError> {
    match &spec.source {
        Source::Http(url) => {
            let client = match &options.client {
                Some(client) => client.clone(),
                None => reqwest::Client::builder()
                    .connect_timeout(options.connect_timeout)
                    .read_timeout(options.read_timeout)
                    .build()
                    .map_err(ImageError::HttpClient)?,
            };
            let name = url.to_string();
            let mut request = client.get(url.clone());
            if let Some(Bearer(token)) = &options.bearer {
                request = request.bearer_auth(token);
            }
            let mut response = request.send().await.map_err(|source| ImageError::Unreachable { url: name.clone(), source })?;
            let status = response.status();
            if !status.is_success() {
                return Err(ImageError::HttpStatus { url: name, status });
            }
            let length = response.content_length();
            let mut prefix = Vec::new();
            while prefix.len() < PREFIX_LEN {
                match response.chunk().await {
                    Ok(Some(bytes)) => prefix.extend_from_slice(&bytes),
                    Ok(None) => break,
                    Err(e) => return Err(body_error(&name, prefix.len() as u64, length, e)),
                }
            }
            Ok(Opened { body: Body::Http { response, url: name }, length, prefix })
        }
        Source::File(path) => {
            let err = |source| ImageError::ReadSource { path: path.clone(), source };
            let mut file = File::open(path).map_err(err)?;
            let length = file.metadata().map_err(err)?.len();
            let mut prefix = Vec::with_capacity(PREFIX_LEN);
            (&mut file).take(PREFIX_LEN as u64).read_to_end(&mut prefix).map_err(err)?;
            Ok(Opened { body: Body::File { file, path: path.clone() }, length: Some(length), prefix })
        }
    }
}

/// Classifies an error met while reading an HTTP body.
fn body_error(url: &str, received: u64, length: Option<u64>, error: reqwest::Error) -> ImageError {
    let eof = !error.is_timeout() && io_error_kind(&error) == Some(io::ErrorKind::UnexpectedEof);
    if eof {
        let by = length.map_or(TruncatedBy::ChunkedTransfer, TruncatedBy::ContentLength);
        ImageError::Truncated { image: url.to_owned(), received, by }
    } else {
        ImageError::ConnectionLost { url: url.to_owned(), received, source: error }
    }
}

/// The kind of the first `io::Error` in an error's source chain.
fn io_error_kind(error: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        current = e.source();
    }
    None
}

/// Stage 1 for HTTP: receive, hash, pack into big buffers.
async fn read_http(
    mut response: reqwest::Response,
    url: String,
    length: Option<u64>,
    prefix: Vec<u8>,
    tx: mpsc::Sender<Block>,
    pool: Pool,
    counters: Arc<Counters>,
) -> Result<Sha256Digest, Stop> {
    let mut packer = Packer { hasher: Sha256::new(), received: 0, buf: pool.take(), tx, pool, counters };
    packer.absorb(&prefix).await?;
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => packer.absorb(&bytes).await?,
            Ok(None) => break,
            Err(e) => return Err(Stop::Failed(body_error(&url, packer.received, length, e))),
        }
    }
    let received = packer.received;
    if let Some(expected) = length.filter(|n| *n != received) {
        return Err(Stop::Failed(ImageError::Truncated { image: url, received, by: TruncatedBy::ContentLength(expected) }));
    }
    packer.finish().await
}

/// Hashes received bytes and packs them into full buffers for the next stage.
struct Packer {
    hasher: Sha256,
    received: u64,
    buf: Vec<u8>,
    tx: mpsc::Sender<Block>,
    pool: Pool,
    counters: Arc<Counters>,
}

impl Packer {
    async fn absorb(&mut self, mut data: &[u8]) -> Result<(), Stop> {
        self.hasher.update(data);
        self.received += data.len() as u64;
        self.counters.downloaded.store(self.received, Ordering::Relaxed);
        while !data.is_empty() {
            let (now, later) = data.split_at((BUFFER_SIZE - self.buf.len()).min(data.len()));
            self.buf.extend_from_slice(now);
            data = later;
            if self.buf.len() == BUFFER_SIZE {
                let full = std::mem::replace(&mut self.buf, self.pool.take());
                self.tx.send(Block::Data(full)).await.map_err(|_| Stop::Aborted)?;
            }
        }
        Ok(())
    }

    async fn finish(self) -> Result<Sha256Digest, Stop> {
        if !self.buf.is_empty() {
            self.tx.send(Block::Data(self.buf)).await.map_err(|_| Stop::Aborted)?;
        }
        self.tx.send(Block::End).await.map_err(|_| Stop::Aborted)?;
        Ok(Sha256Digest(self.hasher.finalize().into()))
    }
}

/// Stage 1 for local files: read, hash, send.
fn read_file(
    mut file: File,
    path: PathBuf,
    prefix: Vec<u8>,
    tx: mpsc::Sender<Block>,
    pool: Pool,
    counters: Arc<Counters>,
) -> Result<Sha256Digest, Stop> {
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut first = Some(prefix);
    loop {
        let mut buf = pool.take();
        if let Some(prefix) = first.take() {
            buf.extend_from_slice(&prefix);
        }
        // Fill the whole buffer (short reads happen), stop at end of file.
        let before = buf.len();
        let room = (BUFFER_SIZE - before) as u64;
        (&mut file)
            .take(room)
            .read_to_end(&mut buf)
            .map_err(|source| Stop::Failed(ImageError::ReadSource { path: path.clone(), source }))?;
        let at_end = buf.len() < BUFFER_SIZE;
        if buf.is_empty() {
            break;
        }
        hasher.update(&buf);
        received += buf.len() as u64;
        counters.downloaded.store(received, Ordering::Relaxed);
        tx.blocking_send(Block::Data(buf)).map_err(|_| Stop::Aborted)?;
        if at_end {
            break;
        }
    }
    tx.blocking_send(Block::End).map_err(|_| Stop::Aborted)?;
    Ok(Sha256Digest(hasher.finalize().into()))
}

/// Stage 2: zstd decoding into big buffers.
struct DecoderCtx {
    image: String,
    pool: Pool,
}

impl DecoderCtx {
    fn run(self, mut rx: mpsc::Receiver<Block>, tx: mpsc::Sender<Block>) -> Result<(), Stop> {
        let mut decoder = zstd::stream::raw::Decoder::new()
            .map_err(|e| Stop::Failed(ImageError::CorruptZstd { image: self.image.clone(), offset: 0, detail: e.to_string() }))?;
        let mut out = self.pool.take();
        let mut consumed = 0u64;
        // `true` between frames; zstd returns 0 when it finishes one.
        let mut frame_done = true;
        let mut saw_input = false;
        loop {
            let input = match rx.blocking_recv() {
                Some(Block::Data(input)) => input,
                Some(Block::End) => break,
                None => return Err(Stop::Aborted),
            };
            saw_input |= !input.is_empty();
            let mut in_buf = InBuffer::around(&input);
            while in_buf.pos() < input.len() {
                let before = in_buf.pos();
                let hint = {
                    let pos = out.len();
                    let mut out_buf = OutBuffer::around_pos(&mut out, pos);
                    decoder.run(&mut in_buf, &mut out_buf).map_err(|e| self.corrupt(consumed + before as u64, e))?
                };
                frame_done = hint == 0;
                if out.len() == out.capacity() {
                    let full = std::mem::replace(&mut out, self.pool.take());
                    tx.blocking_send(Block::Data(full)).map_err(|_| Stop::Aborted)?;
                }
            }
            consumed += input.len() as u64;
            self.pool.give(input);
        }
        // End of input: drain what zstd still holds (the output buffer may have
        // been full when the input ran out).
        loop {
            let pos = out.len();
            let hint = {
                let mut out_buf = OutBuffer::around_pos(&mut out, pos);
                decoder.run(&mut InBuffer::around(&[]), &mut out_buf).map_err(|e| self.corrupt(consumed, e))?
            };
            let produced = out.len() > pos;
            if produced {
                frame_done = hint == 0;
            }
            if out.len() == out.capacity() {
                let full = std::mem::replace(&mut out, self.pool.take());
                tx.blocking_send(Block::Data(full)).map_err(|_| Stop::Aborted)?;
            } else if !produced {
                break;
            }
        }
        if !frame_done || !saw_input {
            return Err(Stop::Failed(ImageError::Truncated { image: self.image, received: consumed, by: TruncatedBy::ZstdFrame }));
        }
        if !out.is_empty() {
            tx.blocking_send(Block::Data(out)).map_err(|_| Stop::Aborted)?;
        }
        tx.blocking_send(Block::End).map_err(|_| Stop::Aborted)?;
        Ok(())
    }

    fn corrupt(&self, offset: u64, error: io::Error) -> Stop {
        Stop::Failed(ImageError::CorruptZstd { image: self.image.clone(), offset, detail: error.to_string() })
    }
}

/// Stage 3: writing to the target.
struct WriterCtx {
    image: String,
    device: PathBuf,
    capacity: u64,
    pool: Pool,
    counters: Arc<Counters>,
}

impl WriterCtx {
    fn run(self, mut file: File, mut rx: mpsc::Receiver<Block>) -> Result<(File, u64), Stop> {
        let mut written = 0u64;
        let mut window_start = 0u64;
        loop {
            let buf = match rx.blocking_recv() {
                Some(Block::Data(buf)) => buf,
                Some(Block::End) => break,
                None => return Err(Stop::Aborted),
            };
            if written + buf.len() as u64 > self.capacity {
                return Err(Stop::Failed(ImageError::StreamTooBig { image: self.image, device: self.device, target_size: self.capacity }));
            }
            file.write_all(&buf)
                .map_err(|source| Stop::Failed(ImageError::Write { device: self.device.clone(), offset: written, source }))?;
            written += buf.len() as u64;
            self.counters.written.store(written, Ordering::Relaxed);
            self.pool.give(buf);
            if written - window_start >= WRITEBACK_WINDOW {
                start_writeback(&file, window_start, written);
                window_start = written;
            }
        }
        Ok((file, written))
    }
}

/// Written data is handed to the disk in windows of this size.
const WRITEBACK_WINDOW: u64 = 32 << 20;

/// Starts writeback of `[start, end)` and drops the window before it from the
/// page cache. Linux's `POSIX_FADV_DONTNEED` starts (without waiting)
/// writeback of dirty pages, then evicts the clean ones: the disk works while
/// the next windows decode, the final fsync only waits for the tail, and an
/// image bigger than the node's memory does not fill it with cache. Advice
/// only: a failure changes nothing but speed.
fn start_writeback(file: &File, start: u64, end: u64) {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    let (Ok(offset), Ok(len)) = (i64::try_from(start), i64::try_from(end - start)) else { return };
    let _ = posix_fadvise(file, offset, len, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
    if let Some(previous) = offset.checked_sub(len).filter(|o| *o >= 0) {
        let _ = posix_fadvise(file, previous, len, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
    }
}

/// Loads a kernel and initrd (open files) with `cmdline` for a later
/// `reboot(RB_KEXEC)`.
pub fn load_kexec(kernel: &std::fs::File, initrd: Option<&std::fs::File>, cmdline: &std::ffi::CStr) -> Result<(), nix::errno::Errno> {
    blkdev::kexec_file_load(kernel, initrd, cmdline)
}

/// Block-device primitives: sizes, partition-table re-read, discard and
/// zero-out; and loading a kernel for kexec. The only `unsafe` code of the crate: each call hands the kernel a
/// valid open descriptor and a pointer to a live, correctly typed value.
#[allow(unsafe_code)]
pub(crate) mod blkdev {
    use std::fs::{File, OpenOptions};
    use std::io;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileTypeExt;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use nix::errno::Errno;

    // <linux/fs.h>: BLKRRPART _IO(0x12,95), BLKSSZGET _IO(0x12,104),
    // BLKGETSIZE64 _IOR(0x12,114,size_t), BLKDISCARD _IO(0x12,119),
    // BLKSECDISCARD _IO(0x12,125), BLKZEROOUT _IO(0x12,127). The last three
    // take a `uint64_t[2]` {start, length} although declared with _IO.
    nix::ioctl_none!(blkrrpart, 0x12, 95);
    nix::ioctl_read_bad!(blksszget, nix::request_code_none!(0x12, 104), nix::libc::c_int);
    nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
    nix::ioctl_write_ptr_bad!(blkdiscard, nix::request_code_none!(0x12, 119), [u64; 2]);
    nix::ioctl_write_ptr_bad!(blksecdiscard, nix::request_code_none!(0x12, 125), [u64; 2]);
    nix::ioctl_write_ptr_bad!(blkzeroout, nix::request_code_none!(0x12, 127), [u64; 2]);

    // BLKROGET _IO(0x12,94) int; <linux/loop.h>: LOOP_CTL_GET_FREE 0x4C82,
    // LOOP_CONFIGURE 0x4C0A (struct loop_config, Linux 5.8+).
    nix::ioctl_read_bad!(blkroget, nix::request_code_none!(0x12, 94), nix::libc::c_int);
    nix::ioctl_none_bad!(loop_ctl_get_free, 0x4C82);
    nix::ioctl_write_ptr_bad!(loop_configure, 0x4C0A, LoopConfig);

    const LO_FLAGS_READ_ONLY: u32 = 1;
    const LO_FLAGS_AUTOCLEAR: u32 = 4;

    /// `struct loop_info64` of <linux/loop.h>.
    #[repr(C)]
    struct LoopInfo64 {
        lo_device: u64,
        lo_inode: u64,
        lo_rdevice: u64,
        lo_offset: u64,
        lo_sizelimit: u64,
        lo_number: u32,
        lo_encrypt_type: u32,
        lo_encrypt_key_size: u32,
        lo_flags: u32,
        lo_file_name: [u8; 64],
        lo_crypt_name: [u8; 64],
        lo_encrypt_key: [u8; 32],
        lo_init: [u64; 2],
    }

    /// `struct loop_config` of <linux/loop.h>.
    #[repr(C)]
    struct LoopConfig {
        fd: u32,
        block_size: u32,
        info: LoopInfo64,
        reserved: [u64; 8],
    }

    /// Whether the kernel marks a block device read-only (false for files).
    pub(crate) fn read_only(file: &File) -> io::Result<bool> {
        if !is_block_device(file)? {
            return Ok(false);
        }
        let mut ro: nix::libc::c_int = 0;
        // SAFETY: a valid descriptor and a pointer to a live int, as BLKROGET expects.
        unsafe { blkroget(file.as_raw_fd(), &mut ro) }.map_err(io::Error::from)?;
        Ok(ro != 0)
    }

    /// Attaches a free loop device to `[offset, offset + size)` of `backing`,
    /// with auto-clear: the kernel detaches it when the last user (the
    /// returned file, then any mount) closes it. Returns its path and an open
    /// handle that keeps it attached.
    pub(crate) fn attach_loop(backing: &File, offset: u64, size: u64, read_only: bool) -> io::Result<(PathBuf, File)> {
        let control = OpenOptions::new().read(true).write(true).open("/dev/loop-control")?;
        let fd = u32::try_from(backing.as_raw_fd()).map_err(io::Error::other)?;
        let mut last = io::Error::other("no loop device");
        // Another process may take the free device between the two calls.
        for _ in 0..16 {
            // SAFETY: a valid descriptor; LOOP_CTL_GET_FREE takes no argument.
            let number = unsafe { loop_ctl_get_free(control.as_raw_fd()) }.map_err(io::Error::from)?;
            let path = PathBuf::from(format!("/dev/loop{number}"));
            let device = OpenOptions::new().read(true).write(!read_only).open(&path)?;
            let config = LoopConfig {
                fd,
                block_size: 0,
                info: LoopInfo64 {
                    lo_device: 0,
                    lo_inode: 0,
                    lo_rdevice: 0,
                    lo_offset: offset,
                    lo_sizelimit: size,
                    lo_number: 0,
                    lo_encrypt_type: 0,
                    lo_encrypt_key_size: 0,
                    lo_flags: LO_FLAGS_AUTOCLEAR | if read_only { LO_FLAGS_READ_ONLY } else { 0 },
                    lo_file_name: [0; 64],
                    lo_crypt_name: [0; 64],
                    lo_encrypt_key: [0; 32],
                    lo_init: [0; 2],
                },
                reserved: [0; 8],
            };
            // SAFETY: valid descriptors and a pointer to a live, fully initialised loop_config.
            match unsafe { loop_configure(device.as_raw_fd(), &config) } {
                Ok(_) => return Ok((path, device)),
                Err(Errno::EBUSY) => last = io::Error::from(Errno::EBUSY),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last)
    }

    /// Whether `file` is a block device.
    pub(crate) fn is_block_device(file: &File) -> io::Result<bool> {
        Ok(file.metadata()?.file_type().is_block_device())
    }

    /// Size in bytes: BLKGETSIZE64 for block devices, the length for regular files.
    pub(crate) fn size(file: &File) -> io::Result<u64> {
        let meta = file.metadata()?;
        if !meta.file_type().is_block_device() {
            return Ok(meta.len());
        }
        let mut size = 0u64;
        // SAFETY: a valid descriptor and a pointer to a live u64, as BLKGETSIZE64 expects.
        unsafe { blkgetsize64(file.as_raw_fd(), &mut size) }.map_err(io::Error::from)?;
        Ok(size)
    }

    /// Logical sector size: BLKSSZGET for block devices, 512 otherwise.
    pub(crate) fn sector_size(file: &File) -> io::Result<u64> {
        if !is_block_device(file)? {
            return Ok(512);
        }
        let mut size: nix::libc::c_int = 0;
        // SAFETY: a valid descriptor and a pointer to a live int, as BLKSSZGET expects.
        unsafe { blksszget(file.as_raw_fd(), &mut size) }.map_err(io::Error::from)?;
        u64::try_from(size).ok().filter(|s| *s >= 512).ok_or_else(|| io::Error::other(format!("odd sector size {size}")))
    }

    /// Asks the kernel to re-read the partition table. `Ok(false)` when the
    /// target has none to re-read (a regular file: ENOTTY; a whole device
    /// without partition support, such as a loop device without `-P`:
    /// EINVAL). A short EBUSY (someone probing a partition) is retried for up
    /// to a second.
    pub(crate) fn reread_partitions(file: &File) -> Result<bool, Errno> {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            // SAFETY: a valid descriptor; BLKRRPART takes no argument.
            match unsafe { blkrrpart(file.as_raw_fd()) } {
                Ok(_) => return Ok(true),
                Err(Errno::ENOTTY | Errno::EINVAL) => return Ok(false),
                Err(Errno::EBUSY) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Loads `kernel` (and `initrd`) with `cmdline` for a later
    /// `reboot(RB_KEXEC)` (kexec_file_load(2)).
    pub(crate) fn kexec_file_load(kernel: &File, initrd: Option<&File>, cmdline: &std::ffi::CStr) -> Result<(), Errno> {
        // KEXEC_FILE_NO_INITRAMFS when there is no initrd.
        let (initrd_fd, flags) = match initrd {
            Some(f) => (f.as_raw_fd(), 0),
            None => (-1, 0x4),
        };
        // SAFETY: valid descriptors (or -1 with the flag that says so); the
        // command line pointer and its length (NUL included) describe a live
        // C string for the duration of the call.
        let r = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_kexec_file_load,
                kernel.as_raw_fd(),
                initrd_fd,
                cmdline.to_bytes_with_nul().len(),
                cmdline.as_ptr(),
                flags as nix::libc::c_ulong,
            )
        };
        Errno::result(r).map(drop)
    }

    /// How a range is to be thrown away.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Discard {
        /// BLKSECDISCARD: the device erases the data.
        Secure,
        /// BLKDISCARD: the device may forget the data.
        Plain,
        /// BLKZEROOUT: the kernel makes the range read as zeros (offloaded
        /// where the device can, written otherwise).
        ZeroOut,
    }

    /// Runs one discard-family ioctl on `[start, start + len)`.
    pub(crate) fn discard(file: &File, how: Discard, start: u64, len: u64) -> Result<(), Errno> {
        let range = [start, len];
        let fd = file.as_raw_fd();
        // SAFETY: a valid descriptor and a pointer to a live [u64; 2], as these ioctls expect.
        unsafe {
            match how {
                Discard::Secure => blksecdiscard(fd, &range),
                Discard::Plain => blkdiscard(fd, &range),
                Discard::ZeroOut => blkzeroout(fd, &range),
            }
        }
        .map(drop)
    }
}
