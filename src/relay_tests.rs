//! Tests of the relay (in-memory duplex pipes, paused time).
use super::*;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{duplex, AsyncReadExt};

#[tokio::test]
async fn copies_both_ways_and_shuts_down() {
    let (mut a_outer, mut a) = duplex(1024);
    let (mut b, mut b_outer) = duplex(1024);
    let relay = tokio::spawn(async move { copy_bidirectional(&mut a, &mut b).await });
    // Larger than the duplex capacity and the scratch buffer: exercises
    // writes that are not ready yet.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let expected = big.clone();
    let writer = tokio::spawn(async move {
        a_outer.write_all(&big).await.unwrap();
        a_outer.shutdown().await.unwrap();
        let mut back = Vec::new();
        a_outer.read_to_end(&mut back).await.unwrap();
        back
    });
    let mut got = Vec::new();
    b_outer.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, expected);
    b_outer.write_all(b"* BYE\r\n").await.unwrap();
    b_outer.shutdown().await.unwrap();
    assert_eq!(writer.await.unwrap(), b"* BYE\r\n");
    let (ab, ba) = relay.await.unwrap().unwrap();
    assert_eq!((ab, ba), (200_000, 7));
}

const IDLE: Idle<'static> = Idle {
    timeout: Duration::from_secs(60),
    farewell: b"* BYE idle\r\n",
};

/// A relay nothing stops from outside.
async fn run_plain<C, U>(
    client: &mut C,
    client_pending: &[u8],
    upstream: &mut U,
    upstream_pending: &[u8],
    idle: Idle<'_>,
) -> Ended
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let traffic = Traffic::default();
    let control = Control {
        stop: std::future::pending(),
        traffic: &traffic,
    };
    run(
        client,
        client_pending,
        upstream,
        upstream_pending,
        idle,
        control,
    )
    .await
}

#[tokio::test(start_paused = true)]
async fn a_stop_sends_its_farewell_closes_both_sides_and_counts_live() {
    let (mut client, mut client_peer) = duplex(64);
    let (mut upstream, mut upstream_peer) = duplex(64);
    let (tx, rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    let traffic = std::sync::Arc::new(Traffic::default());
    let seen = traffic.clone();
    let relay = tokio::spawn(async move {
        let control = Control {
            stop: async move { rx.await.unwrap_or_default() },
            traffic: &traffic,
        };
        run(&mut client, b"", &mut upstream, b"", IDLE, control).await
    });
    let mut buf = vec![0u8; 64];
    client_peer.write_all(b"a IDLE\r\n").await.unwrap();
    let n = upstream_peer.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"a IDLE\r\n");
    upstream_peer.write_all(b"+ idling\r\n").await.unwrap();
    let n = client_peer.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"+ idling\r\n");
    assert_eq!(seen.to_upstream.load(Ordering::Relaxed), 8);
    assert_eq!(seen.to_client.load(Ordering::Relaxed), 10);
    tx.send(b"* BYE revoked\r\n".to_vec()).unwrap();
    let ended = relay.await.unwrap();
    assert!(matches!(ended.how, End::Stopped), "{:?}", ended.how);
    let mut rest = Vec::new();
    client_peer.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"* BYE revoked\r\n");
    // The upstream sees its end of the connection.
    assert_eq!(upstream_peer.read(&mut buf).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn pending_bytes_first_then_both_ways_until_upstream_closes() {
    let (mut client, mut client_peer) = duplex(64);
    let (mut upstream, mut upstream_peer) = duplex(64);
    let relay = tokio::spawn(async move {
        run_plain(
            &mut client,
            b"b1 SELECT\r\n",
            &mut upstream,
            b"* 1 EXISTS\r\n",
            IDLE,
        )
        .await
    });
    let mut buf = vec![0u8; 64];
    let n = upstream_peer.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"b1 SELECT\r\n");
    let n = client_peer.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"* 1 EXISTS\r\n");
    client_peer.write_all(b"b2 NOOP\r\n").await.unwrap();
    let n = upstream_peer.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"b2 NOOP\r\n");
    drop(upstream_peer);
    let bytes = relay.await.unwrap().bytes;
    assert_eq!(
        (bytes.to_upstream, bytes.to_client, bytes.idle_timeout),
        (20, 12, false)
    );
    // The client sees the end.
    assert_eq!(client_peer.read(&mut buf).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_sends_the_farewell_and_activity_resets_it() {
    let (mut client, mut client_peer) = duplex(64);
    let (mut upstream, mut upstream_peer) = duplex(64);
    let relay =
        tokio::spawn(async move { run_plain(&mut client, b"", &mut upstream, b"", IDLE).await });
    let mut buf = vec![0u8; 64];
    // Activity every 50 s keeps the session for 150 s.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(50)).await;
        client_peer.write_all(b"x NOOP\r\n").await.unwrap();
        let n = upstream_peer.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"x NOOP\r\n");
    }
    assert!(!relay.is_finished());
    tokio::time::sleep(Duration::from_secs(61)).await;
    let bytes = relay.await.unwrap().bytes;
    assert!(bytes.idle_timeout);
    let n = client_peer.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"* BYE idle\r\n");
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_does_not_read_does_not_stall_the_other_direction() {
    // The client writes a lot and never reads; the upstream answers a
    // lot. Neither direction may wait for the other.
    let (mut client, mut client_peer) = duplex(1024);
    let (mut upstream, upstream_peer) = duplex(1024);
    let relay =
        tokio::spawn(async move { run_plain(&mut client, b"", &mut upstream, b"", IDLE).await });
    let (mut up_rd, mut up_wr) = tokio::io::split(upstream_peer);
    let upstream_side = tokio::spawn(async move {
        // The upstream writes 64 KiB first (blocks: the client does not
        // read), while reading what the client sends concurrently.
        let writer = async { up_wr.write_all(&vec![b'u'; 64 * 1024]).await };
        let reader = async {
            let mut got = 0;
            let mut buf = vec![0u8; 4096];
            while got < 64 * 1024 {
                match up_rd.read(&mut buf).await.unwrap() {
                    0 => break,
                    n => got += n,
                }
            }
            got
        };
        let (_, got) = tokio::join!(writer, reader);
        got
    });
    client_peer.write_all(&vec![b'c'; 64 * 1024]).await.unwrap();
    assert_eq!(upstream_side.await.unwrap(), 64 * 1024);
    drop(client_peer);
    let _ = relay.await;
}

/// A stream whose writes fail with `kind` once `ok` bytes went through,
/// and whose reads never complete (a client that hung up mid-answer).
struct FailingWriter {
    ok: usize,
    kind: io::ErrorKind,
}

impl AsyncRead for FailingWriter {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

impl AsyncWrite for FailingWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.ok == 0 {
            return Poll::Ready(Err(self.kind.into()));
        }
        let n = buf.len().min(self.ok);
        self.ok -= n;
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_that_hangs_up_after_the_goodbye_is_a_normal_end_with_its_bytes() {
    // The client sent QUIT (pipelined) and vanished: the upstream's 221
    // goes out, then closing the client side fails.
    let mut client = FailingWriter {
        ok: 1024,
        kind: io::ErrorKind::BrokenPipe,
    };
    let (mut upstream, mut upstream_peer) = duplex(1024);
    let relay = tokio::spawn(async move {
        let ended = run_plain(&mut client, b"QUIT\r\n", &mut upstream, b"", IDLE).await;
        ended
    });
    let mut buf = vec![0u8; 64];
    let n = upstream_peer.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"QUIT\r\n");
    upstream_peer.write_all(b"221 2.0.0 Bye\r\n").await.unwrap();
    drop(upstream_peer);
    let ended = relay.await.unwrap();
    assert!(matches!(ended.how, End::HungUp(_)), "{ended:?}");
    assert_eq!((ended.bytes.to_upstream, ended.bytes.to_client), (6, 15));
}

#[tokio::test(start_paused = true)]
async fn an_upstream_failure_keeps_the_byte_counts() {
    let (mut client, mut client_peer) = duplex(1024);
    let mut upstream = FailingWriter {
        ok: 4,
        kind: io::ErrorKind::ConnectionReset,
    };
    let relay =
        tokio::spawn(
            async move { run_plain(&mut client, b"", &mut upstream, b"* OK\r\n", IDLE).await },
        );
    let mut buf = vec![0u8; 64];
    let n = client_peer.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"* OK\r\n");
    client_peer.write_all(b"a NOOP\r\n").await.unwrap();
    let ended = relay.await.unwrap();
    assert!(matches!(ended.how, End::Failed(_)), "{ended:?}");
    assert_eq!((ended.bytes.to_upstream, ended.bytes.to_client), (4, 6));
}
