//! Synchronous netlink requests on a private socket, for every fact source that asks
//! the kernel over netlink (rtnetlink, nf_tables, xfrm).
//!
//! A [`Channel`] is one socket of one netlink protocol, blocking: the gatherer asks a
//! handful of questions every few seconds, so a runtime would buy nothing. Messages of
//! the families that `netlink-packet-route` knows are typed; nf_tables and xfrm, which
//! no permissively licensed crate decodes, travel as [`RawMessage`]s with their
//! attributes read by [`attributes`]. Connection tracking (`ctnetlink`,
//! [`crate::kernel::conntrack`]) uses the same channel.

use std::{convert::Infallible, io, ops::ControlFlow};

use rtnetlink::{
    packet_core::{
        DecodeError, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkBuffer,
        NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
        NlaBuffer, NlasIterator,
    },
    sys::{Socket, SocketAddr},
};

/// Receive buffer: the kernel fills a dump's datagrams up to 32 KiB, whatever the
/// reader offers; twice that leaves room for a larger single answer.
const RECV_BUFFER: usize = 64 * 1024;
/// A dump the kernel marks as interrupted (the data changed while it was read) is
/// read again this many times in all before giving up.
const DUMP_TRIES: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a {protocol} netlink socket")]
    Socket {
        protocol: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot send the {what} request")]
    Send {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the kernel's answer to the {what} request")]
    Recv {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the kernel refused the {what} request")]
    Kernel {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot decode the kernel's answer to the {what} request")]
    Decode {
        what: &'static str,
        #[source]
        source: DecodeError,
    },
    #[error("the kernel's answer to the {what} request is malformed: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("the {what} dump changed while it was read, {tries} times in a row")]
    Interrupted { what: &'static str, tries: u32 },
}

impl NetlinkError {
    /// The errno of a socket that could not be opened or of a refused request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Socket { source, .. } | Self::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Runs `read` again while it fails with [`NetlinkError::Interrupted`], at most
/// [`DUMP_TRIES`] times in all.
pub fn retrying<T>(mut read: impl FnMut() -> Result<T, NetlinkError>) -> Result<T, NetlinkError> {
    let mut tries = 1;
    loop {
        match read() {
            Err(NetlinkError::Interrupted { .. }) if tries < DUMP_TRIES => tries += 1,
            Err(NetlinkError::Interrupted { what, .. }) => {
                return Err(NetlinkError::Interrupted { what, tries });
            }
            other => return other,
        }
    }
}

/// A message of a netlink family no crate here decodes: its type and the bytes
/// after the netlink header (family header, then attributes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawMessage {
    pub kind: u16,
    pub body: Vec<u8>,
}

impl NetlinkSerializable for RawMessage {
    fn message_type(&self) -> u16 {
        self.kind
    }

    fn buffer_len(&self) -> usize {
        self.body.len()
    }

    fn serialize(&self, buffer: &mut [u8]) {
        buffer[..self.body.len()].copy_from_slice(&self.body);
    }
}

impl NetlinkDeserializable for RawMessage {
    type Error = Infallible;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, Self::Error> {
        Ok(Self {
            kind: header.message_type,
            body: payload.to_vec(),
        })
    }
}

/// Appends attribute `kind` with `value` to `body`, padded to 4 bytes.
pub fn push_attribute(body: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
    body.extend_from_slice(&len.to_ne_bytes());
    body.extend_from_slice(&kind.to_ne_bytes());
    body.extend_from_slice(value);
    body.resize(body.len().next_multiple_of(4), 0);
}

/// The attributes in `bytes` as (type without flags, value), or why they are malformed.
pub fn attributes(bytes: &[u8]) -> Result<Vec<(u16, &[u8])>, DecodeError> {
    NlasIterator::new(bytes)
        .map(|nla| {
            nla.map(|nla: NlaBuffer<&[u8]>| {
                let (kind, len) = (nla.kind(), usize::from(nla.length()));
                // The iterator checked that the attribute's length is inside `bytes`.
                (kind, &nla.into_inner()[4..len])
            })
        })
        .collect()
}

/// A NUL-terminated string attribute as text (lossy: names are ASCII in practice).
pub fn string(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

/// A big-endian u32 attribute (nf_tables sends its numbers in network order).
pub fn be_u32(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.get(..4)?.try_into().ok()?))
}

/// One blocking netlink socket of one protocol, connected to the kernel.
pub struct Channel {
    protocol: isize,
    name: &'static str,
    strict: bool,
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
    /// A dump was abandoned half-way: the socket is replaced before the next request.
    dirty: bool,
}

impl Channel {
    /// A socket of netlink `protocol` (`name` for messages); `strict` asks for the
    /// kernel's strict checking of dump requests, which makes it honour their filters.
    pub fn open(protocol: isize, name: &'static str, strict: bool) -> Result<Self, NetlinkError> {
        let socket = Self::socket(protocol, name, strict)?;
        Ok(Self {
            protocol,
            name,
            strict,
            socket,
            sequence: 0,
            buffer: Vec::with_capacity(RECV_BUFFER),
            dirty: false,
        })
    }

    fn socket(protocol: isize, name: &'static str, strict: bool) -> Result<Socket, NetlinkError> {
        let error = |source| NetlinkError::Socket {
            protocol: name,
            source,
        };
        let mut socket = Socket::new(protocol).map_err(error)?;
        socket.bind_auto().map_err(error)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(error)?;
        if strict {
            socket.set_netlink_get_strict_chk(true).map_err(error)?;
        }
        Ok(socket)
    }

    /// Sends `message` as a dump request and calls `each` for every message of the
    /// answer until the kernel's end of dump, or until `each` breaks (the rest of the
    /// dump is then dropped with the socket). A dump the kernel marks as interrupted
    /// fails with [`NetlinkError::Interrupted`] (see [`retrying`]).
    pub fn dump<I>(
        &mut self,
        what: &'static str,
        message: I,
        mut each: impl FnMut(I) -> Result<ControlFlow<()>, NetlinkError>,
    ) -> Result<(), NetlinkError>
    where
        I: NetlinkSerializable + NetlinkDeserializable,
    {
        let sequence = self.send(what, message, NLM_F_REQUEST | NLM_F_DUMP)?;
        // Until the end of the dump is read, the socket is in the middle of it: an
        // early return leaves it to be replaced.
        self.dirty = true;
        let mut interrupted = false;
        let mut done = false;
        let mut ended = false;
        while !done {
            self.receive(what, sequence, |header, payload| {
                interrupted |= header.flags & NLM_F_DUMP_INTR != 0;
                match payload {
                    NetlinkPayload::InnerMessage(inner) => {
                        if each(inner)?.is_break() {
                            done = true;
                            return Ok(ControlFlow::Break(()));
                        }
                        Ok(ControlFlow::Continue(()))
                    }
                    NetlinkPayload::Done(_) => {
                        done = true;
                        ended = true;
                        Ok(ControlFlow::Break(()))
                    }
                    NetlinkPayload::Error(err) if err.code.is_some() => Err(NetlinkError::Kernel {
                        what,
                        source: err.to_io(),
                    }),
                    // An acknowledgement or a no-op inside a dump: nothing to read.
                    _ => Ok(ControlFlow::Continue(())),
                }
            })?;
        }
        if ended {
            self.dirty = false;
        }
        if interrupted {
            return Err(NetlinkError::Interrupted { what, tries: 1 });
        }
        Ok(())
    }

    /// Sends `message` as a plain request and returns the kernel's one answer.
    pub fn request<I>(&mut self, what: &'static str, message: I) -> Result<I, NetlinkError>
    where
        I: NetlinkSerializable + NetlinkDeserializable,
    {
        let sequence = self.send(what, message, NLM_F_REQUEST)?;
        let mut answer = None;
        while answer.is_none() {
            self.receive(what, sequence, |_, payload| match payload {
                NetlinkPayload::InnerMessage(inner) => {
                    answer = Some(inner);
                    Ok(ControlFlow::Break(()))
                }
                NetlinkPayload::Error(err) if err.code.is_some() => Err(NetlinkError::Kernel {
                    what,
                    source: err.to_io(),
                }),
                _ => Ok(ControlFlow::Continue(())),
            })?;
        }
        answer.ok_or(NetlinkError::Malformed {
            what,
            detail: "no answer".into(),
        })
    }

    /// Sends `message` as a request asking for an acknowledgement (no answer besides
    /// it), and waits for it: the kernel's error, if it refused.
    pub fn command<I>(&mut self, what: &'static str, message: I) -> Result<(), NetlinkError>
    where
        I: NetlinkSerializable + NetlinkDeserializable,
    {
        let sequence = self.send(what, message, NLM_F_REQUEST | NLM_F_ACK)?;
        let mut acknowledged = false;
        while !acknowledged {
            self.receive::<I>(what, sequence, |_, payload| match payload {
                NetlinkPayload::Error(err) if err.code.is_some() => Err(NetlinkError::Kernel {
                    what,
                    source: err.to_io(),
                }),
                NetlinkPayload::Error(_) => {
                    acknowledged = true;
                    Ok(ControlFlow::Break(()))
                }
                _ => Ok(ControlFlow::Continue(())),
            })?;
        }
        Ok(())
    }

    fn send<I: NetlinkSerializable>(
        &mut self,
        what: &'static str,
        message: I,
        flags: u16,
    ) -> Result<u32, NetlinkError> {
        if self.dirty {
            self.socket = Self::socket(self.protocol, self.name, self.strict)?;
            self.dirty = false;
        }
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket
            .send(&bytes, 0)
            .map_err(|source| NetlinkError::Send { what, source })?;
        Ok(self.sequence)
    }

    /// Reads one datagram and hands each of its messages of request `sequence` to
    /// `each`, until it breaks.
    fn receive<I>(
        &mut self,
        what: &'static str,
        sequence: u32,
        each: impl FnMut(&NetlinkHeader, NetlinkPayload<I>) -> Result<ControlFlow<()>, NetlinkError>,
    ) -> Result<(), NetlinkError>
    where
        I: NetlinkDeserializable,
    {
        self.buffer.clear();
        let received = self
            .socket
            .recv(&mut self.buffer, libc::MSG_TRUNC)
            .map_err(|source| NetlinkError::Recv { what, source })?;
        if received > self.buffer.len() {
            return Err(NetlinkError::Malformed {
                what,
                detail: format!(
                    "a {received}-byte datagram does not fit the {RECV_BUFFER}-byte buffer"
                ),
            });
        }
        each_message(&self.buffer, what, sequence, each)
    }
}

/// Hands each message of request `sequence` in the datagram `buffer` to `each`, until
/// it breaks; a message that does not decode ends the datagram with an error.
pub fn each_message<I>(
    buffer: &[u8],
    what: &'static str,
    sequence: u32,
    mut each: impl FnMut(&NetlinkHeader, NetlinkPayload<I>) -> Result<ControlFlow<()>, NetlinkError>,
) -> Result<(), NetlinkError>
where
    I: NetlinkDeserializable,
{
    let mut offset = 0;
    while offset < buffer.len() {
        let rest = &buffer[offset..];
        let length = NetlinkBuffer::new_checked(rest)
            .map_err(|source| NetlinkError::Decode { what, source })?
            .length() as usize;
        let message = NetlinkMessage::<I>::deserialize(&rest[..length])
            .map_err(|source| NetlinkError::Decode { what, source })?;
        offset += length.next_multiple_of(4);
        if message.header.sequence_number != sequence {
            // Left over from an earlier request: not ours.
            continue;
        }
        let (header, payload) = message.into_parts();
        if each(&header, payload)?.is_break() {
            return Ok(());
        }
    }
    Ok(())
}
