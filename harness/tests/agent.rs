//! The guest agent survives a guest that stops answering for a while (as
//! firmware activation freezes user space): a request lost in the freeze
//! costs one call's timeout, then the harness reconnects, resynchronizes,
//! and the command in flight still returns its own output. Boots a real
//! guest and stops the real qemu-ga with SIGSTOP from inside it.

mod common;

use std::time::{Duration, Instant};

use common::{runtime, Guest};

#[test]
fn a_command_outlives_a_frozen_agent() {
    let g = Guest::new("nfit-1");
    runtime().block_on(async {
        let m = g.start("agent-freeze").await;
        // The agent is stopped 1 s into the command, for 13 s: at least one
        // status request goes unanswered past the 10 s call timeout.
        let script = "ga=$(pidof qemu-ga); \
                      (sleep 1; kill -STOP $ga; sleep 13; kill -CONT $ga) >/dev/null 2>&1 & \
                      sleep 3; echo finished";
        let argv: Vec<String> = ["/bin/sh", "-c", script].map(String::from).to_vec();
        let t0 = Instant::now();
        let out = m
            .exec(&argv, Duration::from_secs(60))
            .await
            .expect("the command's own output after the agent came back");
        let took = t0.elapsed();
        assert!(out.success(), "{}", out.stderr_text());
        assert_eq!(out.stdout_text(), "finished\n");
        assert!(
            took >= Duration::from_secs(10),
            "the agent was not frozen long enough to lose an answer ({took:?})"
        );
        // The connection is usable afterwards.
        let argv: Vec<String> = ["/bin/sh", "-c", "echo again"].map(String::from).to_vec();
        let out = m.exec(&argv, Duration::from_secs(30)).await.unwrap();
        assert_eq!(out.stdout_text(), "again\n");
        m.kill().await.remove();
    });
}
