//! The bytes of GDB's remote serial protocol, pure: `$payload#xx` framing
//! with its checksum and escapes, an incremental decoder of what the stub
//! sends (acks, packets, corrupt packets), hex, and the replies the client
//! reads (error codes, stop replies, register values).

/// A reply the client could not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("odd number of hex digits")]
    OddHex,
    #[error("`{0}` is not a hex digit")]
    NotHex(char),
    #[error("a register value of {0} bytes (expected 1 to 8)")]
    RegisterWidth(usize),
    #[error("not a stop reply")]
    NotStopReply,
    #[error("`OK` expected")]
    NotOk,
    #[error("{expected} bytes of memory expected, {got} received")]
    MemoryLength { expected: usize, got: usize },
    #[error("{got} bytes of registers, fewer than the {expected} of the general ones and RIP")]
    RegistersShort { expected: usize, got: usize },
}

/// The modulo-256 sum of the bytes between `$` and `#`.
pub fn checksum(body: &[u8]) -> u8 {
    body.iter().fold(0u8, |sum, b| sum.wrapping_add(*b))
}

/// `$payload#xx`, with `$`, `#`, `}` and `*` escaped as `}` and the byte
/// xor 0x20 (the checksum covers the escaped bytes).
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(payload.len() + 4);
    for &b in payload {
        if matches!(b, b'$' | b'#' | b'}' | b'*') {
            body.push(b'}');
            body.push(b ^ 0x20);
        } else {
            body.push(b);
        }
    }
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(b'$');
    out.extend_from_slice(&body);
    out.push(b'#');
    out.extend_from_slice(format!("{:02x}", checksum(&body)).as_bytes());
    out
}

/// One thing the stub sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// `+`: the stub received our packet.
    Ack,
    /// `-`: the stub wants our packet again.
    Nack,
    /// A packet whose checksum matched, unescaped.
    Packet(Vec<u8>),
    /// A packet whose checksum did not match (to be answered with `-`).
    Corrupt { stated: String, computed: u8 },
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Idle,
    Body,
    Checksum,
}

/// Turns the stub's byte stream into [`Received`] items, one byte at a
/// time, so a packet may arrive split over several reads.
#[derive(Debug, Default)]
pub struct Decoder {
    state: State,
    body: Vec<u8>,
    stated: Vec<u8>,
}

impl Decoder {
    /// Feeds one byte; returns an item when it completes one. Bytes outside
    /// a packet other than `+` and `-` are noise and ignored.
    pub fn push(&mut self, byte: u8) -> Option<Received> {
        match self.state {
            State::Idle => match byte {
                b'+' => Some(Received::Ack),
                b'-' => Some(Received::Nack),
                b'$' => {
                    self.body.clear();
                    self.state = State::Body;
                    None
                }
                _ => None,
            },
            State::Body => {
                if byte == b'#' {
                    self.stated.clear();
                    self.state = State::Checksum;
                } else {
                    self.body.push(byte);
                }
                None
            }
            State::Checksum => {
                self.stated.push(byte);
                if self.stated.len() < 2 {
                    return None;
                }
                self.state = State::Idle;
                Some(self.finish())
            }
        }
    }

    fn finish(&mut self) -> Received {
        let computed = checksum(&self.body);
        let stated = String::from_utf8_lossy(&self.stated).into_owned();
        match u8::from_str_radix(&stated, 16) {
            Ok(sum) if sum == computed => Received::Packet(expand(&self.body)),
            _ => Received::Corrupt { stated, computed },
        }
    }
}

/// Undoes `}` escapes and `*` run-length encoding (`x*n` is `x` and
/// n - 29 more of it). QEMU never run-length encodes; gdbservers may.
fn expand(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().copied();
    while let Some(b) = bytes.next() {
        match b {
            b'}' => {
                if let Some(next) = bytes.next() {
                    out.push(next ^ 0x20);
                }
            }
            b'*' => {
                if let (Some(n), Some(&last)) = (bytes.next(), out.last()) {
                    let repeat = usize::from(n.saturating_sub(29));
                    out.extend(std::iter::repeat_n(last, repeat));
                }
            }
            _ => out.push(b),
        }
    }
    out
}

/// Lowercase hex of `bytes` (what a stub sends for memory; the client
/// only sends addresses).
#[cfg(test)]
pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The bytes of a hex string (either case).
pub fn decode_hex(text: &[u8]) -> Result<Vec<u8>, ParseError> {
    if !text.len().is_multiple_of(2) {
        return Err(ParseError::OddHex);
    }
    let digit = |c: u8| {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or(ParseError::NotHex(c as char))
    };
    text.chunks(2)
        .map(|pair| Ok(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// The code of an error reply, `Enn`.
pub fn error_code(reply: &[u8]) -> Option<u8> {
    match reply {
        [b'E', hi, lo] => decode_hex(&[*hi, *lo]).ok().map(|b| b[0]),
        _ => None,
    }
}

/// A register's value from a `p` reply: its bytes in target order, which
/// is little-endian on x86_64.
pub fn parse_register(reply: &[u8]) -> Result<u64, ParseError> {
    let bytes = decode_hex(reply)?;
    if bytes.is_empty() || bytes.len() > 8 {
        return Err(ParseError::RegisterWidth(bytes.len()));
    }
    let mut le = [0u8; 8];
    le[..bytes.len()].copy_from_slice(&bytes);
    Ok(u64::from_le_bytes(le))
}

/// How many registers a `g` reply starts with that [`parse_registers`]
/// keeps: the sixteen general ones and RIP, 8 bytes each on x86_64 (the
/// segment, control and FPU registers that follow are not read).
pub const GENERAL_REGISTERS: usize = 17;

/// The general registers and RIP from a `g` reply, in register-number
/// order, little-endian as [`parse_register`] reads one.
pub fn parse_registers(reply: &[u8]) -> Result<[u64; GENERAL_REGISTERS], ParseError> {
    let expected = GENERAL_REGISTERS * 8;
    let bytes = decode_hex(reply)?;
    if bytes.len() < expected {
        return Err(ParseError::RegistersShort {
            expected,
            got: bytes.len(),
        });
    }
    let mut registers = [0u64; GENERAL_REGISTERS];
    for (value, le) in registers.iter_mut().zip(bytes.chunks_exact(8)) {
        *value = u64::from_le_bytes(le.try_into().expect("8 bytes"));
    }
    Ok(registers)
}

/// Why the guest stopped: `T05thread:01;` after a breakpoint or a step,
/// `T02…` after an interrupt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopReply {
    /// The POSIX signal number GDB uses: 5 (SIGTRAP) for a breakpoint or a
    /// step, 2 (SIGINT) for an interrupt.
    pub signal: u8,
    /// The `thread:` field, QEMU's vCPU index + 1 in hex.
    pub thread: Option<String>,
    /// Every `key:value` pair of the reply, in order.
    pub fields: Vec<(String, String)>,
}

pub const SIGINT: u8 = 2;
pub const SIGTRAP: u8 = 5;

/// What a stop-reply packet says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopEvent {
    Stopped(StopReply),
    /// `Wxx`: the target exited with this status.
    Exited(u8),
    /// `Xxx`: the target was killed by this signal.
    Terminated(u8),
}

/// Parses `Txx…`, `Sxx`, `Wxx` and `Xxx` (anything after `;` in the last
/// two is ignored).
pub fn parse_stop(reply: &[u8]) -> Result<StopEvent, ParseError> {
    let (kind, rest) = reply.split_first().ok_or(ParseError::NotStopReply)?;
    let number = rest.get(..2).ok_or(ParseError::NotStopReply)?;
    let number = decode_hex(number)?[0];
    match kind {
        b'S' => Ok(StopEvent::Stopped(StopReply {
            signal: number,
            thread: None,
            fields: Vec::new(),
        })),
        b'T' => {
            let text = String::from_utf8_lossy(&rest[2..]);
            let fields: Vec<(String, String)> = text
                .split(';')
                .filter_map(|f| f.split_once(':'))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let thread = fields
                .iter()
                .find(|(k, _)| k == "thread")
                .map(|(_, v)| v.clone());
            Ok(StopEvent::Stopped(StopReply {
                signal: number,
                thread,
                fields,
            }))
        }
        b'W' => Ok(StopEvent::Exited(number)),
        b'X' => Ok(StopEvent::Terminated(number)),
        _ => Err(ParseError::NotStopReply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Vec<Received> {
        let mut d = Decoder::default();
        bytes.iter().filter_map(|b| d.push(*b)).collect()
    }

    #[test]
    fn packets_carry_the_checksums_gdb_documents() {
        assert_eq!(encode(b"c"), b"$c#63");
        assert_eq!(encode(b"s"), b"$s#73");
        assert_eq!(encode(b"D"), b"$D#44");
        assert_eq!(encode(b"OK"), b"$OK#9a");
        assert_eq!(
            encode(b"Z0,ffffffffc0a1b2c0,1"),
            b"$Z0,ffffffffc0a1b2c0,1#8f"
        );
        assert_eq!(checksum(b"T05thread:01;"), 0x07);
    }

    #[test]
    fn special_bytes_are_escaped_and_summed_escaped() {
        let packet = encode(b"a#b");
        assert_eq!(&packet[..6], b"$a}\x03b#");
        let sum = checksum(b"a}\x03b");
        assert_eq!(packet[6..], format!("{sum:02x}").into_bytes()[..]);
        assert_eq!(decode_all(&packet), vec![Received::Packet(b"a#b".to_vec())]);
    }

    #[test]
    fn the_decoder_sees_acks_packets_and_corruption() {
        let stream = b"+$T05thread:01;#07x-$OK#9b";
        assert_eq!(
            decode_all(stream),
            vec![
                Received::Ack,
                Received::Packet(b"T05thread:01;".to_vec()),
                Received::Nack,
                Received::Corrupt {
                    stated: "9b".into(),
                    computed: 0x9a
                },
            ]
        );
    }

    #[test]
    fn a_packet_split_over_reads_is_one_packet() {
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for chunk in [&b"+$f0ff00"[..], b"0000000000#", b"a", b"2"] {
            got.extend(chunk.iter().filter_map(|b| d.push(*b)));
        }
        assert_eq!(
            got,
            vec![
                Received::Ack,
                Received::Packet(b"f0ff000000000000".to_vec())
            ]
        );
    }

    #[test]
    fn run_length_encoding_expands() {
        // "0* " is '0' and 32 - 29 = 3 more.
        assert_eq!(expand(b"0* 1"), b"00001");
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        assert_eq!(decode_hex(b"00ff7Fa0").unwrap(), vec![0, 0xff, 0x7f, 0xa0]);
        assert_eq!(to_hex(&[0, 0xff, 0x7f]), "00ff7f");
        assert_eq!(decode_hex(b"abc"), Err(ParseError::OddHex));
        assert_eq!(decode_hex(b"zz"), Err(ParseError::NotHex('z')));
    }

    #[test]
    fn registers_are_little_endian() {
        assert_eq!(parse_register(b"f0ff000000000000").unwrap(), 0xfff0);
        assert_eq!(
            parse_register(b"c0b2a1c0ffffffff").unwrap(),
            0xffff_ffff_c0a1_b2c0
        );
        assert_eq!(parse_register(b"02000000").unwrap(), 2);
        assert_eq!(parse_register(b""), Err(ParseError::RegisterWidth(0)));
    }

    #[test]
    fn a_g_reply_gives_the_general_registers_and_rip() {
        let mut reply = String::new();
        for n in 0..GENERAL_REGISTERS as u64 {
            reply.push_str(&to_hex(&(0x1000 + n).to_le_bytes()));
        }
        // eflags and a segment register follow; they are not read.
        reply.push_str("4600000010000000");
        let registers = parse_registers(reply.as_bytes()).unwrap();
        assert_eq!(registers[0], 0x1000);
        assert_eq!(registers[16], 0x1010);
        assert_eq!(
            parse_registers(&reply.as_bytes()[..16 * 16]),
            Err(ParseError::RegistersShort {
                expected: 136,
                got: 128
            })
        );
    }

    #[test]
    fn error_replies_are_told_from_values() {
        assert_eq!(error_code(b"E14"), Some(0x14));
        assert_eq!(error_code(b"e14"), None);
        assert_eq!(error_code(b"OK"), None);
        assert_eq!(error_code(b"E1"), None);
    }

    #[test]
    fn stop_replies_parse() {
        let StopEvent::Stopped(stop) = parse_stop(b"T05thread:01;").unwrap() else {
            panic!("not a stop");
        };
        assert_eq!(stop.signal, SIGTRAP);
        assert_eq!(stop.thread.as_deref(), Some("01"));
        let StopEvent::Stopped(stop) = parse_stop(b"T02thread:p01.01;10:f0ff;").unwrap() else {
            panic!("not a stop");
        };
        assert_eq!(stop.signal, SIGINT);
        assert_eq!(stop.thread.as_deref(), Some("p01.01"));
        assert_eq!(stop.fields.len(), 2);
        assert_eq!(parse_stop(b"W00").unwrap(), StopEvent::Exited(0));
        assert_eq!(
            parse_stop(b"X09;process:1").unwrap(),
            StopEvent::Terminated(9)
        );
        assert_eq!(parse_stop(b"OK"), Err(ParseError::NotStopReply));
        assert_eq!(parse_stop(b"Tzz"), Err(ParseError::NotHex('z')));
        assert_eq!(parse_stop(b"Q05"), Err(ParseError::NotStopReply));
        assert_eq!(parse_stop(b""), Err(ParseError::NotStopReply));
    }
}
