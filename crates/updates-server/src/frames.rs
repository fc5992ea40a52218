//! A pass-through stream that follows the WebSocket framing of what a client sends, so that the
//! session can tell how long a fragmented message has stayed unfinished.
//!
//! tungstenite keeps an incomplete fragmented message inside its own state and hands us only
//! complete messages (and control frames between fragments), so without this a client could
//! start a 1 MiB message, answer pings for ever and never finish it (finding 4). Parsing frame
//! headers here costs a few branches per read and no copy: the bytes go through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where the parser is in the client's byte stream.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// In the HTTP upgrade request; `matched` bytes of the closing `\r\n\r\n` seen.
    Http { matched: u8 },
    /// In a frame header: `have` of its bytes seen, `need` known so far.
    Header {
        bytes: [u8; 14],
        have: usize,
        need: usize,
    },
    /// In a frame's payload: bytes left to skip.
    Payload { remaining: u64 },
}

/// Wraps a server-side stream, watching the client's frames go by.
#[derive(Debug)]
pub struct FrameWatch<S> {
    inner: S,
    phase: Phase,
    fragment_open_since: Option<Instant>,
}

impl<S> FrameWatch<S> {
    /// Wraps `inner`, which must be at the start of the client's HTTP upgrade request.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            phase: Phase::Http { matched: 0 },
            fragment_open_since: None,
        }
    }

    /// Since when the client has had a fragmented data message open (first fragment seen, last
    /// not yet), if it has one now.
    pub fn fragment_open_since(&self) -> Option<Instant> {
        self.fragment_open_since
    }

    fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match &mut self.phase {
                Phase::Http { matched } => {
                    const END: &[u8; 4] = b"\r\n\r\n";
                    let byte = bytes[0];
                    bytes = &bytes[1..];
                    if byte == END[usize::from(*matched)] {
                        *matched += 1;
                    } else {
                        *matched = u8::from(byte == END[0]);
                    }
                    if usize::from(*matched) == END.len() {
                        self.phase = Phase::Header {
                            bytes: [0; 14],
                            have: 0,
                            need: 2,
                        };
                    }
                }
                Phase::Payload { remaining } => {
                    let skip = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    bytes = &bytes[skip..];
                    *remaining -= skip as u64;
                    if *remaining == 0 {
                        self.phase = Phase::Header {
                            bytes: [0; 14],
                            have: 0,
                            need: 2,
                        };
                    }
                }
                Phase::Header {
                    bytes: header,
                    have,
                    need,
                } => {
                    let take = (*need - *have).min(bytes.len());
                    header[*have..*have + take].copy_from_slice(&bytes[..take]);
                    *have += take;
                    bytes = &bytes[take..];
                    if *have < *need {
                        continue;
                    }
                    if *need == 2 {
                        let extended = match header[1] & 0x7f {
                            126 => 2,
                            127 => 8,
                            _ => 0,
                        };
                        let mask = if header[1] & 0x80 != 0 { 4 } else { 0 };
                        *need = 2 + extended + mask;
                        if *need > 2 {
                            continue;
                        }
                    }
                    let header = *header;
                    let length = match header[1] & 0x7f {
                        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
                        127 => {
                            let mut word = [0u8; 8];
                            word.copy_from_slice(&header[2..10]);
                            u64::from_be_bytes(word)
                        }
                        short => u64::from(short),
                    };
                    self.frame(header[0]);
                    self.phase = if length == 0 {
                        Phase::Header {
                            bytes: [0; 14],
                            have: 0,
                            need: 2,
                        }
                    } else {
                        Phase::Payload { remaining: length }
                    };
                }
            }
        }
    }

    /// One frame header's first byte: FIN and opcode.
    fn frame(&mut self, first: u8) {
        let fin = first & 0x80 != 0;
        match first & 0x0f {
            // Text or binary: unfinished unless FIN; a new message restarts the clock only if
            // none was open (tungstenite refuses a second one anyway).
            1 | 2 if !fin => {
                self.fragment_open_since.get_or_insert_with(Instant::now);
            }
            1 | 2 => self.fragment_open_since = None,
            // Continuation: the last one closes the message.
            0 if fin => self.fragment_open_since = None,
            // Control frames (ping, pong, close) may come between fragments: no change.
            _ => {}
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameWatch<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let fresh = buf.filled().get(before..).unwrap_or_default();
            self.observe(fresh);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameWatch<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload_len: usize) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        match payload_len {
            0..=125 => out.push(0x80 | payload_len as u8),
            126..=65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(payload_len as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(payload_len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&[1, 2, 3, 4]);
        out.extend(std::iter::repeat_n(0x55, payload_len));
        out
    }

    fn watched(chunks: &[&[u8]]) -> FrameWatch<()> {
        let mut watch = FrameWatch::new(());
        for chunk in chunks {
            // Byte by byte too: the parser must not care how reads split the stream.
            for byte in chunk.iter() {
                watch.observe(std::slice::from_ref(byte));
            }
        }
        watch
    }

    const REQUEST: &[u8] = b"GET /v1/mutable_updates HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn an_unfinished_fragment_is_seen_and_its_end_clears_it() {
        let first = frame(false, 1, 70_000);
        let ping = frame(true, 9, 4);
        let watch = watched(&[REQUEST, &first, &ping]);
        assert!(watch.fragment_open_since().is_some());
        let middle = frame(false, 0, 200);
        let last = frame(true, 0, 10);
        let watch = watched(&[REQUEST, &first, &ping, &middle, &last]);
        assert!(watch.fragment_open_since().is_none());
    }

    #[test]
    fn whole_messages_and_control_frames_open_nothing() {
        let text = frame(true, 1, 300);
        let pong = frame(true, 10, 0);
        let binary = frame(true, 2, 5);
        let watch = watched(&[REQUEST, &text, &pong, &binary]);
        assert!(watch.fragment_open_since().is_none());
    }

    #[test]
    fn the_request_itself_is_not_parsed_as_frames() {
        // A request whose bytes would look like an unfinished text frame header.
        let watch = watched(&[b"\x01\x85GET / HTTP/1.1\r\n\r\n"]);
        assert!(watch.fragment_open_since().is_none());
        let first = frame(false, 2, 1);
        assert!(watched(&[REQUEST, &first]).fragment_open_since().is_some());
    }
}
