//! Switchboard's object model: the Kubernetes resource types Switchboard serves,
//! their defaulting and validation with Kubernetes-style field errors, label and
//! field selectors, and the `Status` bodies every API error becomes.
//!
//! This crate does no IO: the apiserver, the CLI and the controllers share it,
//! and it is unit- and property-tested on its own.

pub mod defaults;
pub mod envvars;
pub mod fields;
pub mod intern;
pub mod labels;
pub mod names;
pub mod pack;
pub mod resource;
pub mod smp;
pub mod status;
pub mod validation;

pub use fields::FieldSelector;
pub use labels::{LabelSet, Labels, ParseError, Selector};
pub use resource::{RESOURCES, ResourceType};
pub use validation::{ErrorList, FieldError, FieldErrorKind};
