//! # gatehouse-standalone: serving a folder of manifests (`gatehouse run -f PATH`)
//!
//! ```text
//!  PATH ──read + compile──▶ Loaded ──the rule──▶ apply to the proxy's Shared table
//!   ▲    (load.rs)                  (reload.rs)   or keep the last good one
//!   └── every change below PATH (notify, bursts settled), every Reread (SIGHUP)  follow.rs
//! ```
//!
//! It owns the policy of standalone mode: reading the manifests (a file or a directory
//! tree), compiling them with the same compiler as the controller, deciding whether a
//! new compilation replaces the table that serves, and the loop that reloads on every
//! change. The rule (module `reload`): a reload never makes things worse. A file that
//! does not parse, or an object that was served and now fails to compile, keeps the last
//! good table serving, and the log names the object, field and reason; new invalid
//! objects and unsupported fields are reported while the rest applies.
//!
//! What it must not know: command-line flags, listeners, signals and process exit (the
//! binary wires those: it opens the listeners, and turns SIGHUP into a [`Reread`] and
//! SIGTERM into the end of [`follow`]); what manifests mean (the compiler decides); the
//! Kubernetes client (the controller is the other way tables are made).

mod follow;
mod load;
mod reload;

pub use follow::{Reread, WatchError, follow};
pub use load::{LoadError, Loaded, load};
pub use reload::{Folder, OpenError, Reloaded, Verdict, judge};
