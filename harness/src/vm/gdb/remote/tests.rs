//! The client against a scripted stub on a socket pair (acks, resends,
//! error replies, deadlines, the detach a drop owes), and once against a
//! real QEMU gdbstub when qemu-system-x86_64 is installed.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

use super::packet::{self, Decoder, Received};
use super::{x86_64, Error, GdbClient, SIGTRAP};

const SHORT: Duration = Duration::from_millis(300);

fn framed(payload: &str) -> Vec<u8> {
    packet::encode(payload.as_bytes())
}

fn ack_and(payload: &str) -> Vec<u8> {
    let mut out = b"+".to_vec();
    out.extend(framed(payload));
    out
}

/// A stub that answers each item the client sends (acks excepted) with the
/// next scripted bytes, and returns every byte it received once the
/// client closes or goes quiet.
fn scripted_stub(mut end: UnixStream, script: Vec<(Received, Vec<u8>)>) -> JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut decoder = Decoder::default();
        let mut script = script.into_iter();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let read = tokio::time::timeout(SHORT * 3, end.read(&mut buf)).await;
            let n = match read {
                Ok(Ok(n)) if n > 0 => n,
                _ => return seen,
            };
            seen.extend_from_slice(&buf[..n]);
            for b in &buf[..n] {
                let Some(item) = decoder.push(*b) else {
                    continue;
                };
                if item == Received::Ack {
                    continue;
                }
                let (expected, answer) = script.next().expect("a scripted answer");
                assert_eq!(item, expected, "the stub got an unexpected item");
                end.write_all(&answer).await.unwrap();
            }
        }
    })
}

fn packet(payload: &str) -> Received {
    Received::Packet(payload.as_bytes().to_vec())
}

fn client_and_stub(script: Vec<(Received, Vec<u8>)>) -> (GdbClient, JoinHandle<Vec<u8>>) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    (GdbClient::over(ours, SHORT), scripted_stub(theirs, script))
}

#[tokio::test]
async fn a_reply_is_acked_and_decoded() {
    let (mut gdb, stub) = client_and_stub(vec![
        (packet("p10"), ack_and("f0ff000000000000")),
        (packet("D"), Vec::new()),
    ]);
    assert_eq!(gdb.read_register(x86_64::RIP).await.unwrap(), 0xfff0);
    drop(gdb);
    let seen = stub.await.unwrap();
    // The command, then the ack of its reply, then the detach a drop owes.
    assert_eq!(seen, b"$p10#d1+$D#44");
}

#[tokio::test]
async fn a_corrupt_reply_is_asked_for_again_and_a_nacked_packet_resent() {
    let bad = b"+$0100000000000000#00".to_vec();
    let (mut gdb, stub) = client_and_stub(vec![
        (packet("p2"), b"-".to_vec()),
        (packet("p2"), bad),
        (Received::Nack, framed("0100000000000000")),
        (packet("D"), ack_and("OK")),
    ]);
    assert_eq!(gdb.read_register(x86_64::RCX).await.unwrap(), 1);
    gdb.detach().await.unwrap();
    let seen = String::from_utf8(stub.await.unwrap()).unwrap();
    assert_eq!(seen, "$p2#a2$p2#a2-+$D#44+");
}

#[tokio::test]
async fn error_and_empty_replies_are_typed() {
    let (mut gdb, _stub) = client_and_stub(vec![
        (packet("mfffffff0,16"), ack_and("E14")),
        (packet("Z0,1000,1"), ack_and("")),
    ]);
    let err = gdb.read_memory(0xffff_fff0, 0x16).await.unwrap_err();
    assert!(matches!(err, Error::Refused { code: 0x14, .. }), "{err}");
    let err = gdb.set_breakpoint(0x1000).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
}

#[tokio::test]
async fn a_silent_stub_times_out() {
    let (ours, _theirs) = UnixStream::pair().unwrap();
    let mut gdb = GdbClient::over(ours, Duration::from_millis(50));
    let err = gdb.remove_breakpoint(0x1000).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn continue_waits_for_the_breakpoint_and_steps_off_it() {
    let (mut gdb, stub) = client_and_stub(vec![
        (packet("Z0,ffffffffc0a1b2c0,1"), ack_and("OK")),
        (packet("c"), ack_and("T05thread:01;")),
        (packet("s"), ack_and("T05thread:01;")),
        (packet("c"), b"+".to_vec()),
        (packet("D"), Vec::new()),
    ]);
    gdb.set_breakpoint(0xffff_ffff_c0a1_b2c0).await.unwrap();
    gdb.cont().await.unwrap();
    let stop = gdb.wait_stop(SHORT).await.unwrap();
    assert_eq!((stop.signal, stop.thread.as_deref()), (SIGTRAP, Some("01")));
    gdb.step().await.unwrap();
    gdb.cont().await.unwrap();
    let err = gdb.read_register(0).await.unwrap_err();
    assert!(matches!(err, Error::Running { .. }), "{err}");
    let err = gdb.wait_stop(Duration::from_millis(50)).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    drop(gdb);
    let seen = String::from_utf8(stub.await.unwrap()).unwrap();
    // Dropped while running: interrupted, then detached.
    assert!(seen.ends_with("$c#63\x03$D#44"), "{seen:?}");
}

#[tokio::test]
async fn all_registers_come_in_one_round_trip() {
    let mut reply = String::new();
    for n in 0..17u64 {
        reply.push_str(&packet::to_hex(&(n * 0x11).to_le_bytes()));
    }
    let (mut gdb, _stub) = client_and_stub(vec![
        (packet("g"), ack_and(&reply)),
        (packet("g"), ack_and("0011")),
    ]);
    let registers = gdb.read_registers().await.unwrap();
    assert_eq!(registers.get(x86_64::RDX), 3 * 0x11);
    assert_eq!(registers.get(x86_64::RIP), 16 * 0x11);
    let err = gdb.read_registers().await.unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err}");
}

#[tokio::test]
async fn memory_is_read_in_chunks() {
    let chunk = packet::to_hex(&[0xab; 1024]);
    let (mut gdb, _stub) = client_and_stub(vec![
        (packet("m1000,400"), ack_and(&chunk)),
        (packet("m1400,2"), ack_and("0102")),
        (packet("m0,4"), ack_and("01")),
    ]);
    let bytes = gdb.read_memory(0x1000, 1026).await.unwrap();
    assert_eq!(bytes.len(), 1026);
    assert_eq!(&bytes[1022..], &[0xab, 0xab, 1, 2]);
    let err = gdb.read_memory(0, 4).await.unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err}");
}

/// A paused `pc` machine: its CPU sits at the reset vector and runs
/// nothing (`-M none` has no x86 CPU, and the stub refuses a machine
/// without one). Killed as soon as the client has detached.
#[tokio::test]
async fn a_real_gdbstub_answers() {
    let Ok(qemu) = crate::vm::qemu::find_binary() else {
        eprintln!("skipped: qemu-system-x86_64 not found ($NDHARNESS_QEMU, $PATH)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("gdb.sock");
    let argv: Vec<String> = [
        "-M",
        "pc",
        "-S",
        "-nodefaults",
        "-m",
        "16",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "none",
        "-gdb",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("unix:{},server=on,wait=off", socket.display())])
    .collect();
    let mut process =
        crate::vm::QemuProcess::spawn(&qemu, &argv, &dir.path().join("qemu.log")).unwrap();
    let mut gdb = GdbClient::connect(&socket, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(gdb.halt_reason().await.unwrap().signal, SIGTRAP);
    assert_eq!(gdb.read_register(x86_64::RIP).await.unwrap(), 0xfff0);
    let registers = gdb.read_registers().await.unwrap();
    assert_eq!(registers.get(x86_64::RIP), 0xfff0);
    assert_eq!(
        registers.get(x86_64::RDX),
        gdb.read_register(x86_64::RDX).await.unwrap()
    );
    gdb.set_breakpoint(0xfff0).await.unwrap();
    gdb.remove_breakpoint(0xfff0).await.unwrap();
    assert_eq!(gdb.step().await.unwrap().signal, SIGTRAP);
    assert_ne!(gdb.read_register(x86_64::RIP).await.unwrap(), 0xfff0);
    assert_eq!(gdb.read_memory(0, 8).await.unwrap().len(), 8);
    gdb.detach().await.unwrap();
    process.kill().await;
}
