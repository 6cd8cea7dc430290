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
pub async fn write_frames<W: AsyncWrite + Unpin>(
    mut writer: FramedWrite<W, FrameCodec>,
    mut rx: mpsc::Receiver<Frame>,
) {
    while let Some(frame) = rx.recv().await {
        if writer.feed(frame).await.is_err() {
            return;
        }
        tokio::task::yield_now().await;
        while let Ok(more) = rx.try_recv() {
            if writer.feed(more).await.is_err() {
                return;
            }
        }
        if writer.flush().await.is_err() {
            return;
        }
    }
}
