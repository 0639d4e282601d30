//! A minimal pcap (libpcap classic format) writer for UDP/IPv4 datagrams, so
//! what the transmit side sends can be checked with tshark or Wireshark.

use std::io::{self, Write};
use std::net::SocketAddrV4;
use std::time::Duration;

/// Writes Ethernet/IPv4/UDP frames into a pcap stream.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header (link type Ethernet).
    pub fn new(mut out: W) -> io::Result<PcapWriter<W>> {
        out.write_all(&0xa1b2c3d4u32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        out.write_all(&65535u32.to_le_bytes())?;
        out.write_all(&1u32.to_le_bytes())?;
        Ok(PcapWriter { out })
    }

    /// Appends one UDP datagram captured at `at` since the epoch.
    pub fn write_udp(
        &mut self,
        at: Duration,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: &[u8],
    ) -> io::Result<()> {
        let udp_len = 8 + payload.len();
        let ip_len = 20 + udp_len;
        let (Ok(udp_len16), Ok(ip_len16)) = (u16::try_from(udp_len), u16::try_from(ip_len)) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "datagram too large for IPv4",
            ));
        };
        let mut frame = Vec::with_capacity(14 + ip_len);
        frame.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&ip_len16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&src.ip().octets());
        ip[16..20].copy_from_slice(&dst.ip().octets());
        let checksum = ip_checksum(&ip);
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&src.port().to_be_bytes());
        frame.extend_from_slice(&dst.port().to_be_bytes());
        frame.extend_from_slice(&udp_len16.to_be_bytes());
        frame.extend_from_slice(&[0, 0]); // UDP checksum optional over IPv4
        frame.extend_from_slice(payload);
        self.out.write_all(&(at.as_secs() as u32).to_le_bytes())?;
        self.out.write_all(&at.subsec_micros().to_le_bytes())?;
        self.out.write_all(&(frame.len() as u32).to_le_bytes())?;
        self.out.write_all(&(frame.len() as u32).to_le_bytes())?;
        self.out.write_all(&frame)
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

fn ip_checksum(header: &[u8; 20]) -> u16 {
    let mut sum: u32 = header
        .chunks_exact(2)
        .map(|w| u16::from_be_bytes([w[0], w[1]]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_header_and_a_record() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let a = "127.0.0.1:4000".parse().unwrap();
        let b = "127.0.0.1:5000".parse().unwrap();
        w.write_udp(Duration::from_millis(1500), a, b, &[1, 2, 3])
            .unwrap();
        let bytes = w.into_inner();
        assert_eq!(bytes.len(), 24 + 16 + 14 + 20 + 8 + 3);
        assert_eq!(&bytes[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        // The IPv4 header checksums to zero when summed with its checksum.
        let ip: [u8; 20] = bytes[24 + 16 + 14..24 + 16 + 34].try_into().unwrap();
        assert_eq!(ip_checksum(&ip), 0);
    }
}
