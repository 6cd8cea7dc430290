//! Socket plumbing shared by terminal sessions and bank links.

use futures_util::SinkExt;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio_util::codec::FramedWrite;

use crate::iso8583::framing::{Frame, FrameCodec};

/// Writes the frames queued on `rx` until the queue closes or the socket
/// fails. After the first frame of a batch it yields once, so that other
/// ready tasks can queue theirs, and then writes everything queued with one
/// flush: one syscall carries many frames instead of one each.
///
/// Returns the writer once every queued frame is written and flushed (the
/// queue closed), so that its owner can shut the write side down; `None`
/// when the socket failed.
pub async fn write_frames<W: AsyncWrite + Unpin>(
    mut writer: FramedWrite<W, FrameCodec>,
    mut rx: mpsc::Receiver<Frame>,
) -> Option<W> {
    while let Some(frame) = rx.recv().await {
        writer.feed(frame).await.ok()?;
        tokio::task::yield_now().await;
        while let Ok(more) = rx.try_recv() {
            writer.feed(more).await.ok()?;
        }
        writer.flush().await.ok()?;
    }
    Some(writer.into_inner())
}
