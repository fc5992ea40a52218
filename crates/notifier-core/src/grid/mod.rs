//! Joining a grid: grid descriptions (parse, check, render; [`description`]), handing one to a
//! user over magic-wormhole ([`invite`]), and the user's own Tahoe node — its gateway URL and
//! its aliases, write-caps reduced to read-caps before anything leaves the alias file
//! ([`tahoe_node`]).

pub mod description;
pub mod invite;
pub mod tahoe_node;
