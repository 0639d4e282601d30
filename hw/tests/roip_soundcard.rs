//! Captures through cpal from an ALSA PCM backed by a file (`type file` over a
//! `null` slave, defined in a config in the test's temp dir), so the
//! sound-card driver is exercised end to end with no sound hardware.

use std::time::Duration;

use rollcall_hw::link::{spawn_supervised, Backoff, LinkEvent};
use rollcall_hw::soundcard::{SoundcardConfig, SoundcardDriver, VoxConfig};
use tokio_util::sync::CancellationToken;

const RATE: u32 = 48_000;

fn write_input(path: &std::path::Path) {
    // 0.4 s silence, 0.6 s of 1 kHz, then silence to 3 s.
    let mut bytes = Vec::new();
    for n in 0..(RATE * 3) {
        let t = n as f32 / RATE as f32;
        let s = if (0.4..1.0).contains(&t) {
            (8000.0 * (2.0 * std::f32::consts::PI * 1000.0 * t).sin()) as i16
        } else {
            0
        };
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_from_a_file_backed_alsa_device_with_vox() {
    let dir = std::env::temp_dir().join(format!("roip-alsa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.raw");
    let output = dir.join("out.raw");
    write_input(&input);
    let conf = dir.join("asound.conf");
    std::fs::write(
        &conf,
        format!(
            r#"
pcm.rollcall_file {{
    type plug
    slave {{
        pcm {{
            type file
            slave.pcm {{ type null }}
            file "{out}"
            infile "{inp}"
            format "raw"
        }}
        format S16_LE
        rate {RATE}
        channels 1
    }}
    hint {{ show on description "rollcall test file device" }}
}}
"#,
            out = output.display(),
            inp = input.display()
        ),
    )
    .unwrap();
    // Only this test runs in this process, before ALSA is first used.
    std::env::set_var("ALSA_CONFIG_PATH", &conf);

    // A missing device names the ones that exist.
    let cancel = CancellationToken::new();
    let (_h, mut events, _task) = spawn_supervised(
        "missing",
        Box::new(SoundcardDriver::new(
            SoundcardConfig::new("no_such_pcm"),
            None,
        )),
        Backoff::default(),
        cancel.clone(),
    );
    match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
        Ok(Some(LinkEvent::Down { reason, .. })) => {
            assert!(reason.contains("no_such_pcm"), "{reason}");
            assert!(reason.contains("rollcall_file"), "{reason}");
        }
        other => panic!("expected Down, got {other:?}"),
    }
    cancel.cancel();

    let cancel = CancellationToken::new();
    let mut cfg = SoundcardConfig::new("rollcall_file");
    cfg.vox = VoxConfig {
        open_dbfs: -30.0,
        hang_ms: 200,
    };
    let (handle, mut events, task) = spawn_supervised(
        "card",
        Box::new(SoundcardDriver::new(cfg, None)),
        Backoff::default(),
        cancel.clone(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut frames = 0usize;
    let mut loud_frames = 0usize;
    let mut cor = Vec::new();
    let mut up = false;
    while cor.len() < 2 {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("timed out waiting for VOX open and close")
            .expect("driver ended");
        match event {
            LinkEvent::Up => up = true,
            LinkEvent::Audio { frame, cor: open } => {
                frames += 1;
                if frame.level_dbfs() > -20.0 {
                    loud_frames += 1;
                    assert!(open, "a loud frame must come with VOX open");
                }
            }
            LinkEvent::Cor(open) => cor.push((frames, open)),
            LinkEvent::Down { reason, .. } => panic!("down: {reason}"),
            _ => {}
        }
    }
    assert!(up);
    // Tone from frame 20 to 50 (0.4–1.0 s); VOX opens on it and closes 200 ms after.
    assert!(cor[0].1);
    assert!(
        (19..=22).contains(&cor[0].0),
        "opened at frame {}",
        cor[0].0
    );
    assert!(!cor[1].1);
    assert!(
        (58..=62).contains(&cor[1].0),
        "closed at frame {}",
        cor[1].0
    );
    assert!(
        (27..=31).contains(&loud_frames),
        "{loud_frames} loud frames"
    );

    // Playback goes to the file while keyed.
    assert!(handle.ptt(true));
    for _ in 0..10 {
        assert!(handle.transmit(rollcall_hw::audio::AudioFrame::from_slice(&[5000; 160])));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let written = std::fs::read(&output).map(|b| b.len()).unwrap_or(0);
        let has_audio = std::fs::read(&output)
            .map(|b| {
                b.chunks_exact(2)
                    .any(|c| i16::from_le_bytes([c[0], c[1]]) > 4000)
            })
            .unwrap_or(false);
        if has_audio {
            assert!(written > 0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no transmitted audio in {output:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    task.await.unwrap();

    // With a COR wire, squelch follows the wire, not the level, and PTT is
    // passed to the keying wire.
    let (cor_tx, cor_rx) = tokio::sync::watch::channel(false);
    let (ptt_tx, mut ptt_rx) = tokio::sync::watch::channel(false);
    let cancel = CancellationToken::new();
    let driver =
        SoundcardDriver::new(SoundcardConfig::new("rollcall_file"), Some(cor_rx)).with_ptt(ptt_tx);
    let (handle, mut events, task) = spawn_supervised(
        "wired",
        Box::new(driver),
        Backoff::default(),
        cancel.clone(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !matches!(next(&mut events, deadline).await, LinkEvent::Up) {}
    // Tone frames arrive with the squelch closed: VOX is not used.
    let mut loud_closed = 0;
    while loud_closed < 5 {
        if let LinkEvent::Audio { frame, cor } = next(&mut events, deadline).await {
            assert!(!cor);
            if frame.level_dbfs() > -20.0 {
                loud_closed += 1;
            }
        }
    }
    cor_tx.send(true).unwrap();
    loop {
        match next(&mut events, deadline).await {
            LinkEvent::Cor(true) => break,
            LinkEvent::Cor(false) => panic!("COR closed unasked"),
            _ => {}
        }
    }
    assert!(matches!(
        next(&mut events, deadline).await,
        LinkEvent::Audio { cor: true, .. }
    ));
    assert!(handle.ptt(true));
    ptt_rx.changed().await.unwrap();
    assert!(*ptt_rx.borrow_and_update());
    cancel.cancel();
    task.await.unwrap();
    assert!(!*ptt_rx.borrow(), "PTT released on the way out");
    let _ = std::fs::remove_dir_all(&dir);
}

async fn next(
    events: &mut tokio::sync::mpsc::Receiver<LinkEvent>,
    deadline: tokio::time::Instant,
) -> LinkEvent {
    tokio::time::timeout_at(deadline, events.recv())
        .await
        .expect("timed out")
        .expect("driver ended")
}
