//! Image writing: files and loop devices as targets, local files and HTTP as
//! sources, and every failure the controller must be able to tell apart.

use std::path::Path;

use ferrum_agent::image::{
    Format, ImageError, ImageSpec, Progress, Sha256Digest, Source, Stage, TruncatedBy, WriteOptions, WriteReport, write_image,
};

use crate::fixture::{HttpServer, IMAGE_SIZE, Images, Loop, MIB, Serve, read_at, sha256_file, sha256_prefix, sparse_file};

fn spec(source: &str, format: Format, sha256: Option<&str>, size: Option<u64>) -> ImageSpec {
    ImageSpec {
        source: source.parse::<Source>().expect("source"),
        format,
        sha256: sha256.map(|h| h.parse::<Sha256Digest>().expect("digest")),
        size,
    }
}

async fn write(spec: &ImageSpec, target: &Path) -> Result<WriteReport, ImageError> {
    write_image(spec, target, &WriteOptions::default(), |_| {}).await
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_and_zstd_files_land_byte_identical_in_a_file() {
    let images = Images::build();
    for (source, format, sha) in [(&images.raw, Format::Raw, &images.raw_sha), (&images.zst, Format::RawZst, &images.zst_sha)] {
        let target = sparse_file(&images.dir.join(format!("target-{format}")), IMAGE_SIZE);
        let report = write(&spec(path(source), format, Some(sha), Some(IMAGE_SIZE)), &target).await.expect("write");
        assert_eq!(report.written, IMAGE_SIZE);
        assert_eq!(report.downloaded, std::fs::metadata(source).expect("stat").len());
        assert_eq!(report.sha256.to_string(), *sha);
        assert!(report.sha256_verified);
        assert!(!report.partitions_reread, "a regular file has no partition table to re-read");
        assert_eq!(sha256_file(&target), images.raw_sha, "{format} written to a file differs from the raw image");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn zstd_and_raw_over_http_land_byte_identical_on_a_loop_device() {
    let images = Images::build();
    for (source, format, sha) in [(&images.zst, Format::RawZst, &images.zst_sha), (&images.raw, Format::Raw, &images.raw_sha)] {
        let body = std::fs::read(source).expect("read image");
        let body_len = body.len() as u64;
        let server = HttpServer::start(body, Serve::Full).await;
        // Bigger than the image and full of stale data.
        let disk = images.dir.join(format!("disk-{format}"));
        std::fs::write(&disk, vec![0x5au8; (80 * MIB) as usize]).expect("stale disk");
        let dev = Loop::attach(&disk);

        let url = server.url("image");
        let mut reports: Vec<Progress> = Vec::new();
        let report = write_image(&spec(&url, format, Some(sha), None), &dev.dev, &WriteOptions::default(), |p| reports.push(p))
            .await
            .expect("write over HTTP");
        assert_eq!(report.written, IMAGE_SIZE);
        assert_eq!(report.downloaded, body_len);
        assert_eq!(report.target_size, 80 * MIB);
        assert_eq!(sha256_prefix(&dev.dev, IMAGE_SIZE), images.raw_sha, "{format} over HTTP differs on {}", dev.dev.display());
        assert_eq!(read_at(&dev.dev, IMAGE_SIZE, 4096), vec![0x5au8; 4096], "bytes past the image must stay untouched");

        let last = reports.last().expect("at least one progress report");
        assert_eq!(*last, Progress { stage: Stage::Flushing, downloaded: body_len, written: IMAGE_SIZE, expected: Some(IMAGE_SIZE) });
        assert!(reports.windows(2).all(|w| w[0].written <= w[1].written && w[0].downloaded <= w[1].downloaded), "{reports:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupted_zstd_is_reported_as_such() {
    let images = Images::build();
    let mut body = std::fs::read(&images.zst).expect("read");
    let middle = body.len() / 2;
    body[middle..middle + 4096].fill(0xa5);
    let server = HttpServer::start(body, Serve::Full).await;
    let target = sparse_file(&images.dir.join("target"), IMAGE_SIZE);
    let url = server.url("corrupt.img.zst");

    let err = write(&spec(&url, Format::RawZst, None, None), &target).await.expect_err("corrupt data accepted");
    assert!(matches!(err, ImageError::CorruptZstd { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.starts_with(&format!("{url}: corrupted zstd data near compressed byte ")), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_shorter_than_its_content_length_is_truncated() {
    let images = Images::build();
    let body = std::fs::read(&images.zst).expect("read");
    let len = body.len() as u64;
    let server = HttpServer::start(body, Serve::CloseAfter((len / 2) as usize)).await;
    let target = sparse_file(&images.dir.join("target"), IMAGE_SIZE);
    let url = server.url("short.img.zst");

    let err = write(&spec(&url, Format::RawZst, Some(&images.zst_sha), None), &target).await.expect_err("truncated accepted");
    let ImageError::Truncated { received, by, .. } = &err else { panic!("expected Truncated, got {err:?}") };
    assert_eq!(*by, TruncatedBy::ContentLength(len));
    assert!(*received <= len / 2, "received {received} of {}", len / 2);
    assert_eq!(
        err.to_string(),
        format!("{url}: stream truncated after {received} bytes: the server announced {len} bytes (Content-Length)")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zstd_file_cut_inside_a_frame_is_truncated() {
    let images = Images::build();
    let body = std::fs::read(&images.zst).expect("read");
    let cut = images.dir.join("cut.img.zst");
    std::fs::write(&cut, &body[..body.len() / 2]).expect("write");
    let target = sparse_file(&images.dir.join("target"), IMAGE_SIZE);

    let err = write(&spec(path(&cut), Format::RawZst, None, None), &target).await.expect_err("cut frame accepted");
    assert!(matches!(err, ImageError::Truncated { by: TruncatedBy::ZstdFrame, .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{}: stream truncated after {} bytes: the data ends inside a zstd frame", cut.display(), body.len() / 2)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_sha256_fails_naming_both_digests() {
    let images = Images::build();
    let wrong = "0".repeat(64);
    let target = sparse_file(&images.dir.join("target"), IMAGE_SIZE);

    let err = write(&spec(path(&images.raw), Format::Raw, Some(&wrong), None), &target).await.expect_err("wrong digest accepted");
    assert!(matches!(err, ImageError::ChecksumMismatch { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("{}: sha256 mismatch: expected {wrong}, got {}", images.raw.display(), images.raw_sha));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_declared_size_fails() {
    let images = Images::build();
    let target = sparse_file(&images.dir.join("target"), 2 * IMAGE_SIZE);
    let err = write(&spec(path(&images.zst), Format::RawZst, None, Some(IMAGE_SIZE + 512)), &target).await.expect_err("size accepted");
    assert!(matches!(err, ImageError::SizeMismatch { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{}: decoded size is {IMAGE_SIZE} bytes but {} were declared", images.zst.display(), IMAGE_SIZE + 512)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_too_small_device_is_refused_before_writing() {
    let images = Images::build();
    let small = sparse_file(&images.dir.join("small"), 32 * MIB);
    let dev = Loop::attach(&small);
    let body = std::fs::read(&images.raw).expect("read");
    let server = HttpServer::start(body, Serve::Full).await;

    // Declared by Content-Length (raw) and by the zstd frame header.
    for (source, format) in [(server.url("disk.img"), Format::Raw), (images.zst.to_string_lossy().into_owned(), Format::RawZst)] {
        let err = write(&spec(&source, format, None, None), &dev.dev).await.expect_err("too small accepted");
        assert!(
            matches!(err, ImageError::TargetTooSmall { target_size, image_size, .. } if target_size == 32 * MIB && image_size == IMAGE_SIZE),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("{} holds {} bytes but the image needs {IMAGE_SIZE}: nothing written", dev.dev.display(), 32 * MIB)
        );
        assert!(read_at(&dev.dev, 0, MIB as usize).iter().all(|b| *b == 0), "something was written");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_bigger_than_the_device_fails_mid_way() {
    let images = Images::build();
    let small = sparse_file(&images.dir.join("small"), 32 * MIB);
    let dev = Loop::attach(&small);

    // No declared size: only the stream itself shows it does not fit.
    let err = write(&spec(path(&images.zst_unsized), Format::RawZst, None, None), &dev.dev).await.expect_err("overflow accepted");
    assert!(matches!(err, ImageError::StreamTooBig { target_size, .. } if target_size == 32 * MIB), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{} does not fit on {}: the stream goes past its {} bytes", images.zst_unsized.display(), dev.dev.display(), 32 * MIB)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_goes_away_mid_stream_is_a_lost_connection() {
    let images = Images::build();
    let body = std::fs::read(&images.zst).expect("read");
    let server = HttpServer::start(body, Serve::ResetAfter(MIB as usize)).await;
    let target = sparse_file(&images.dir.join("target"), IMAGE_SIZE);
    let url = server.url("disk.img.zst");

    let err = write(&spec(&url, Format::RawZst, Some(&images.zst_sha), None), &target).await.expect_err("reset accepted");
    let ImageError::ConnectionLost { received, .. } = &err else { panic!("expected ConnectionLost, got {err:?}") };
    assert!(*received <= MIB, "received {received}");
    assert_eq!(err.to_string(), format!("connection to {url} lost after {received} bytes"));
}

#[tokio::test(flavor = "multi_thread")]
async fn http_errors_and_an_unreachable_server_are_named() {
    let images = Images::build();
    let target = sparse_file(&images.dir.join("target"), IMAGE_SIZE);

    let server = HttpServer::start(Vec::new(), Serve::Status(404)).await;
    let url = server.url("missing.img");
    let err = write(&spec(&url, Format::Raw, None, None), &target).await.expect_err("404 accepted");
    assert!(matches!(err, ImageError::HttpStatus { status, .. } if status.as_u16() == 404), "{err:?}");
    assert_eq!(err.to_string(), format!("GET {url}: server answered 404 Not Found"));

    // A port nobody listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("http://127.0.0.1:{port}/disk.img");
    let err = write(&spec(&url, Format::Raw, None, None), &target).await.expect_err("unreachable accepted");
    assert!(matches!(err, ImageError::Unreachable { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("cannot reach {url}"));
}
