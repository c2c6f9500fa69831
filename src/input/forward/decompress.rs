//! Capped decompression of CompressedPackedForward entries (gzip, zstd).

use std::io::Read;

/// Compression named by a request's `compressed` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// Option missing or `"text"` (Fluentd always sends the key).
    None,
    Gzip,
    Zstd,
    /// HTTP `Content-Encoding: deflate`: zlib-wrapped as the RFC says, or
    /// raw deflate as some clients send it.
    Deflate,
}

/// Why compressed entries could not be expanded; each closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("decompressed entries exceed the {limit}-byte limit (forward.max_decompressed_bytes)")]
    TooLarge { limit: usize },
    #[error("corrupt {kind} data: {source}")]
    Corrupt {
        kind: &'static str,
        source: std::io::Error,
    },
    /// Asked not to wait, the output needed budget that is not free now.
    #[error("the memory budget is spent")]
    WouldWait,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The compression `data` really has: its magic bytes win over the option,
/// as Fluent Bit's in_forward decides.
pub(crate) fn detect(option: Compression, data: &[u8]) -> Compression {
    if data.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd
    } else if data.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else {
        option
    }
}

/// Compresses entries the way clients do (gzip fast, zstd level 1), for the
/// load tools.
pub(crate) fn compress(kind: Compression, data: &[u8]) -> Vec<u8> {
    match kind {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let _ = std::io::Write::write_all(&mut e, data);
            e.finish().unwrap_or_default()
        }
        Compression::Zstd => zstd::encode_all(data, 1).unwrap_or_default(),
        Compression::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            let _ = std::io::Write::write_all(&mut e, data);
            e.finish().unwrap_or_default()
        }
    }
}

/// Expands `data`, refusing to produce more than `limit` bytes.
///
/// gzip may hold several members back to back (the spec allows it); zstd
/// several frames. When the magic bytes contradict the option, the magic
/// wins, as Fluent Bit's in_forward does.
pub(crate) fn decompress(
    compression: Compression,
    data: &[u8],
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    match decoder(compression, data)? {
        None => Ok(data.to_vec()),
        Some((reader, kind)) => read_capped(reader, limit, kind),
    }
}

/// A reader of compressed data expanded, and the compression's name.
type Decoder<'a> = (Box<dyn Read + Send + 'a>, &'static str);

/// The [`Decoder`] of `data`; `None` when `data` is not compressed.
fn decoder(compression: Compression, data: &[u8]) -> Result<Option<Decoder<'_>>, DecompressError> {
    Ok(match detect(compression, data) {
        Compression::None => None,
        Compression::Gzip => Some((Box::new(flate2::read::MultiGzDecoder::new(data)), "gzip")),
        Compression::Zstd => {
            let dec = zstd::stream::read::Decoder::with_buffer(data).map_err(|source| {
                DecompressError::Corrupt {
                    kind: "zstd",
                    source,
                }
            })?;
            Some((Box::new(dec), "zstd"))
        }
        Compression::Deflate if is_zlib(data) => {
            Some((Box::new(flate2::read::ZlibDecoder::new(data)), "deflate"))
        }
        Compression::Deflate => {
            Some((Box::new(flate2::read::DeflateDecoder::new(data)), "deflate"))
        }
    })
}

/// Whether `data` starts with a zlib header (RFC 1950: deflate method, and
/// the two bytes a multiple of 31).
fn is_zlib(data: &[u8]) -> bool {
    match data {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

/// Output taken from the decoder between two budget checks.
const STEP: usize = 1 << 20;

/// [`decompress`], taking the output's memory from the connections' budget
/// before it grows: waiting while the budget is spent, or, with `may_wait`
/// false, failing with [`DecompressError::WouldWait`] instead.
pub(crate) async fn decompress_within(
    compression: Compression,
    data: &[u8],
    limit: usize,
    budget: &super::budget::MemoryBudget,
    held: &mut super::budget::Reservation,
    may_wait: bool,
) -> Result<Vec<u8>, DecompressError> {
    // What the connection holds already (its read buffer) stays held.
    let base = held.bytes();

    let Some((mut reader, kind)) = decoder(compression, data)? else {
        grow(budget, held, base + data.len(), may_wait).await?;
        return Ok(data.to_vec());
    };
    let mut out = Vec::new();
    loop {
        // Never ask for more than `limit` in all: a larger wish could exceed
        // the budget's reserve, and its holder would wait on the pool while
        // keeping the reserve from everyone else. One byte past the limit
        // is read (unaccounted) to learn that the output is too large.
        let step = STEP.min(limit + 1 - out.len().min(limit));
        grow(budget, held, base + (out.len() + step).min(limit), may_wait).await?;
        let before = out.len();
        // Exactly what was taken from the budget: no doubling growth.
        out.reserve_exact(step);
        (&mut reader)
            .take(step as u64)
            .read_to_end(&mut out)
            .map_err(|source| DecompressError::Corrupt { kind, source })?;
        if out.len() > limit {
            return Err(DecompressError::TooLarge { limit });
        }
        if out.len() == before {
            return Ok(out);
        }
    }
}

/// Grows `held` to `bytes`, waiting if `may_wait`, else only if free now.
async fn grow(
    budget: &super::budget::MemoryBudget,
    held: &mut super::budget::Reservation,
    bytes: usize,
    may_wait: bool,
) -> Result<(), DecompressError> {
    if may_wait {
        budget.grow_to(held, bytes).await;
        Ok(())
    } else if budget.try_grow_to(held, bytes) {
        Ok(())
    } else {
        Err(DecompressError::WouldWait)
    }
}

fn read_capped(r: impl Read, limit: usize, kind: &'static str) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    r.take(cap)
        .read_to_end(&mut out)
        .map_err(|source| DecompressError::Corrupt { kind, source })?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn several_gzip_members_are_joined() {
        let mut two = gz(b"hello ");
        two.extend(gz(b"world"));
        assert_eq!(
            decompress(Compression::Gzip, &two, 100).unwrap(),
            b"hello world"
        );
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 10 << 20]).unwrap();
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        assert!(matches!(
            decompress(Compression::Gzip, &bomb, 1 << 20),
            Err(DecompressError::TooLarge { .. })
        ));
        let zbomb = zstd::encode_all(&vec![0u8; 10 << 20][..], 3).unwrap();
        assert!(matches!(
            decompress(Compression::Zstd, &zbomb, 1 << 20),
            Err(DecompressError::TooLarge { .. })
        ));
    }

    /// Connections holding part of a small budget (their read buffers)
    /// each decompress nearly `limit` bytes: the one with the reserve must
    /// always be able to finish, so all of them do.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn decompressing_near_the_limit_never_deadlocks_a_small_budget() {
        use super::super::budget::MemoryBudget;
        let limit = 256 << 10;
        // max_buffer 256 KiB + max_decompressed 256 KiB is the reserve.
        let budget = MemoryBudget::new(600 << 10, 512 << 10, crate::metrics::Metrics::new());
        let blob = std::sync::Arc::new(gz(&vec![7u8; limit - 1000]));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (budget, blob) = (budget.clone(), blob.clone());
            tasks.push(tokio::spawn(async move {
                let mut held = budget.reservation();
                budget.grow_to(&mut held, 60 << 10).await;
                let out =
                    decompress_within(Compression::Gzip, &blob, limit, &budget, &mut held, true)
                        .await
                        .unwrap();
                assert_eq!(out.len(), limit - 1000);
                assert!(
                    out.capacity() <= limit + STEP,
                    "no doubling past the budget"
                );
                budget.release(&mut held);
            }));
        }
        let all = async {
            for t in tasks {
                t.await.unwrap();
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), all)
            .await
            .expect("every decompression finishes");
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn magic_wins_over_the_option() {
        let z = zstd::encode_all(&b"abc"[..], 1).unwrap();
        assert_eq!(decompress(Compression::Gzip, &z, 10).unwrap(), b"abc");
        assert!(decompress(Compression::Gzip, b"not gzip", 10).is_err());
    }
}
