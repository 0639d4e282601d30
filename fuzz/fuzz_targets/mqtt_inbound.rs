//! Inbound MQTT payloads (acks from guards' phones, console commands): any
//! topic suffix and any payload must give either a valid message for a guard
//! on the roster or a named error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcalld::mqtt::schema::{parse_inbound, Topics};
use rollcalld::roster::{Company, Guard, RosterSnapshot};

fuzz_target!(|data: &[u8]| {
    // [suffix_len][suffix bytes][payload...]
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n as usize).min(rest.len());
    let (suffix, payload) = rest.split_at(n);
    let topics = Topics::new("rollcall", "st1");
    let topic = format!("{}/{}", topics.base, String::from_utf8_lossy(suffix));
    let roster = roster();
    for commands in [false, true] {
        let _ = parse_inbound(&topics, &topic, payload, &roster, commands);
        let ack = format!("{}/ack/g01", topics.base);
        let _ = parse_inbound(&topics, &ack, payload, &roster, commands);
        let cmd = format!("{}/cmd/rollcall", topics.base);
        let _ = parse_inbound(&topics, &cmd, payload, &roster, commands);
    }
});

fn roster() -> RosterSnapshot {
    let company = Company {
        id: "acme".into(),
        name: "Acme".into(),
        supervisor: None,
        supervisor_phone: None,
    };
    let guard = Guard {
        id: "g01".into(),
        name: "Guard One".into(),
        company: "acme".into(),
        post: None,
        dtmf: Some("101".into()),
        selcall: Some("10101".into()),
        mdc1200: Some("1001".into()),
        dmr: Some(2_620_001),
        app_id: Some("phone-g01".into()),
        groups: vec![],
    };
    RosterSnapshot::new(vec![company], vec![guard], vec![])
}
