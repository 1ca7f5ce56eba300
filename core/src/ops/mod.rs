//! The operators a batch's rows pass through besides the transform: the event-time
//! [`watermark`] and its late rows, [`dedup`]lication within the watermark, the
//! [`static_tables`] a batch joins at the versions it recorded, and the streaming
//! [`aggregation`](crate::ops::aggregate). Each is a plain function of a batch's rows and the state
//! before it, with no IO but the static tables' reads.

pub mod aggregate;
pub mod dedup;
pub mod static_tables;
pub mod watermark;
