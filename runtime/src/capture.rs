//! The guest's stdout and stderr: captured in memory up to the output cap, and, when
//! live output is on, forwarded chunk by chunk as the guest writes them (EXEC-016).

use crate::sandbox::Stream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Where forwarded chunks go; `None` marks the end of the run.
pub(crate) type ForwardTx = mpsc::Sender<Option<(Stream, bytes::Bytes)>>;

/// A guest output stream: captured in memory up to one byte over the cap (which tells an
/// overflowing guest from one that wrote exactly the cap), and, when live output is on,
/// forwarded chunk by chunk to the thread that calls the [`OutputSink`].
#[derive(Clone)]
pub(crate) struct CaptureStream {
    pub pipe: MemoryOutputPipe,
    forward: Option<Forward>,
}

#[derive(Clone)]
struct Forward {
    stream: Stream,
    tx: ForwardTx,
    /// Bytes of this stream accepted so far, shared by every handle to it.
    written: Arc<AtomicUsize>,
    /// The output cap: bytes past it are not captured in the outcome, nor forwarded.
    cap: usize,
}

impl CaptureStream {
    pub fn new(cap: usize, stream: Stream, tx: Option<ForwardTx>) -> CaptureStream {
        CaptureStream {
            pipe: MemoryOutputPipe::new(cap.saturating_add(1)),
            forward: tx.map(|tx| Forward {
                stream,
                tx,
                written: Arc::new(AtomicUsize::new(0)),
                cap,
            }),
        }
    }

    /// Forwards `bytes`, which the pipe has just accepted, up to the cap.
    fn forward(&self, mut bytes: bytes::Bytes) {
        let Some(f) = &self.forward else { return };
        let before = f.written.fetch_add(bytes.len(), Ordering::Relaxed);
        bytes.truncate(f.cap.saturating_sub(before));
        if !bytes.is_empty() {
            // The receiver outlives the run; a send can only fail if its thread died.
            let _ = f.tx.send(Some((f.stream, bytes)));
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
        self.forward(bytes);
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
            self.forward(bytes::Bytes::copy_from_slice(&buf[..n]));
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
