//! The guest's stdout and stderr: captured in memory up to the output cap, the order of
//! its writes across the two kept ([`WriteOrder`]), and, when live output is on,
//! forwarded chunk by chunk as the guest writes them (EXEC-016).

use crate::sandbox::Stream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Where forwarded chunks go; `None` marks the end of the run.
pub(crate) type ForwardTx = mpsc::Sender<Option<(Stream, bytes::Bytes)>>;

/// The most runs a [`WriteOrder`] keeps: a guest that switches streams more often than
/// this has its order dropped (a replay then gives stdout whole, then stderr).
pub const MAX_WRITE_RUNS: usize = 1 << 16;

/// The order in which a guest wrote its two streams, within the cap: runs of bytes, each
/// one stream's, consecutive writes to one stream merged. What a cache hit needs to
/// interleave the streams as the fresh run did.
#[derive(Default)]
pub(crate) struct WriteOrder {
    runs: Vec<(Stream, u64)>,
    dropped: bool,
}

impl WriteOrder {
    fn record(&mut self, stream: Stream, len: usize) {
        if len == 0 || self.dropped {
            return;
        }
        if let Some((last, n)) = self.runs.last_mut()
            && *last == stream
        {
            *n += len as u64;
        } else if self.runs.len() >= MAX_WRITE_RUNS {
            self.dropped = true;
            self.runs = Vec::new();
        } else {
            self.runs.push((stream, len as u64));
        }
    }

    /// The runs, or none if there were too many to keep.
    pub fn finish(self) -> Vec<(Stream, u64)> {
        self.runs
    }
}

/// A guest output stream: captured in memory up to one byte over the cap (which tells an
/// overflowing guest from one that wrote exactly the cap), its writes recorded in the
/// run's [`WriteOrder`], and, when live output is on, forwarded chunk by chunk to the
/// thread that calls the [`OutputSink`].
#[derive(Clone)]
pub(crate) struct CaptureStream {
    pub pipe: MemoryOutputPipe,
    stream: Stream,
    /// Bytes of this stream accepted so far, shared by every handle to it.
    written: Arc<AtomicUsize>,
    /// The output cap: bytes past it are not captured in the outcome, nor forwarded.
    cap: usize,
    order: Arc<Mutex<WriteOrder>>,
    forward: Option<ForwardTx>,
}

impl CaptureStream {
    pub fn new(
        cap: usize,
        stream: Stream,
        order: Arc<Mutex<WriteOrder>>,
        forward: Option<ForwardTx>,
    ) -> CaptureStream {
        CaptureStream {
            pipe: MemoryOutputPipe::new(cap.saturating_add(1)),
            stream,
            written: Arc::new(AtomicUsize::new(0)),
            cap,
            order,
            forward,
        }
    }

    /// Records and forwards `bytes`, which the pipe has just accepted, up to the cap.
    fn accepted(&self, mut bytes: bytes::Bytes) {
        let before = self.written.fetch_add(bytes.len(), Ordering::Relaxed);
        bytes.truncate(self.cap.saturating_sub(before));
        if bytes.is_empty() {
            return;
        }
        if let Ok(mut order) = self.order.lock() {
            order.record(self.stream, bytes.len());
        }
        if let Some(tx) = &self.forward {
            // The receiver outlives the run; a send can only fail if its thread died.
            let _ = tx.send(Some((self.stream, bytes)));
        }
    }
}

impl IsTerminal for CaptureStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CaptureStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CaptureStream {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CaptureStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        // The pipe takes all of `bytes` or none of them.
        self.pipe.write(bytes.clone())?;
        self.accepted(bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.pipe.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.pipe.check_write()
    }
}

impl tokio::io::AsyncWrite for CaptureStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.pipe).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = polled {
            self.accepted(bytes::Bytes::copy_from_slice(&buf[..n]));
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.pipe).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.pipe).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_per_stream_and_are_dropped_past_the_bound() {
        let mut order = WriteOrder::default();
        for (stream, len) in [
            (Stream::Stdout, 3),
            (Stream::Stdout, 2),
            (Stream::Stderr, 0),
            (Stream::Stderr, 4),
            (Stream::Stdout, 1),
        ] {
            order.record(stream, len);
        }
        assert_eq!(
            order.finish(),
            [
                (Stream::Stdout, 5),
                (Stream::Stderr, 4),
                (Stream::Stdout, 1)
            ]
        );
        let mut order = WriteOrder::default();
        for i in 0..=MAX_WRITE_RUNS {
            order.record(
                if i % 2 == 0 {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                },
                1,
            );
        }
        assert!(order.finish().is_empty(), "too many runs to keep are none");
    }
}
