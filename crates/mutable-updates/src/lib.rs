//! The mutable-updates v1 protocol.

pub mod message;

pub use message::{
    BatchedUpdates, ClientMessage, ErrorCode, MessageError, ProtocolError, RequestedIndex,
    ServerMessage, Status, Subscribe, SubscriptionStatus, Unsubscribe, Update, PROTOCOL_VERSION,
    VERSION_FIELD,
};
